#!/usr/bin/env node
// The Debian packages the build, the demo and the tests need: the one list.
// .ci/run installs exactly these (`node tools/system-packages.mjs`), the
// README's `apt-get install` line names the same ones
// (test/unit/system-packages.test.ts fails when they differ), and the test
// scripts check for them first, so that a missing one is reported by name
// instead of as a CMake or node-gyp failure.
//
// One entry a package: what it is needed for (`for`, the groups below) and
// how to tell it is installed (`command` on the PATH, or `file` present; a
// `*` in a file path matches one directory level, for versioned paths).
//
//   node tools/system-packages.mjs              the names, one a line
//   node tools/system-packages.mjs --check G... exit 1 naming every missing package of groups G
//
// Groups: addon (compile the addon), cpp (the C++ tests), fuzz (libFuzzer
// sessions), e2e (namespaces, the AF_PACKET, AF_XDP and DPDK drivers, real servers), demo,
// browser (the dashboard's tests in headless Chromium, and its screenshot).
import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const systemPackages = [
  { name: 'iproute2', for: ['e2e', 'demo'], command: 'ip', why: 'ip: the namespace lab, the af_packet driver, real-server set-up' },
  { name: 'nftables', for: ['e2e', 'demo'], command: 'nft', why: "nft: the host guard (the host kernel kept out of the balancer's traffic)" },
  { name: 'util-linux', for: ['e2e'], command: 'setpriv', why: 'setpriv, unshare, taskset: privilege tests, the benchmark smoke test' },
  { name: 'procps', for: ['e2e', 'demo'], command: 'sysctl', why: 'sysctl: real-server set-up, lab hosts' },
  { name: 'make', for: ['addon', 'cpp'], command: 'make', why: 'node-gyp and CMake builds' },
  { name: 'g++', for: ['addon', 'cpp'], command: 'g++', why: 'the addon and the C++ tests (C++20)' },
  { name: 'python3', for: ['addon', 'e2e'], command: 'python3', why: 'node-gyp; raw tunnel packets in the real-server tests' },
  { name: 'cmake', for: ['cpp'], command: 'cmake', why: 'the C++ tests and fuzz targets' },
  { name: 'libgtest-dev', for: ['cpp'], file: '/usr/include/gtest/gtest.h', why: 'GoogleTest for the C++ unit tests' },
  { name: 'clang', for: ['fuzz', 'e2e'], command: 'clang++', why: "libFuzzer builds (tools/cpp-tests.mjs --fuzz); the AF_XDP driver's XDP program (clang -target bpf)" },
  { name: 'pkg-config', for: ['e2e'], command: 'pkg-config', why: 'finds libxdp, libbpf and libdpdk, so that the AF_XDP and DPDK drivers (l4lb_af_xdp.so, l4lb_dpdk.so) are built' },
  { name: 'libxdp-dev', for: ['e2e'], file: '/usr/include/xdp/xsk.h', why: 'AF_XDP sockets for the af_xdp driver (optional: without it the addon builds without that driver)' },
  { name: 'libbpf-dev', for: ['e2e'], file: '/usr/include/bpf/libbpf.h', why: "loads and attaches the af_xdp driver's XDP program; fills the dpdk driver's program maps" },
  { name: 'libdpdk-dev', for: ['e2e'], file: '/usr/include/dpdk/rte_eal.h', why: 'DPDK for the dpdk driver (l4lb_dpdk.so; optional: without it the addon builds without that driver)' },
  { name: 'bird2', for: ['e2e'], command: 'bird', why: 'BIRD: route announcement of the VIPs over BGP (option bgp), its e2e test' },
  { name: 'chromium', for: ['browser'], command: 'chromium', why: "headless Chromium: the dashboard's browser tests and docs/dashboard.png (tools/dashboard-screenshot.ts)" },
  { name: 'libclang-rt-14-dev', for: ['fuzz'], file: '/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a', why: "libFuzzer's runtime" },
];

const groupNames = { addon: 'building the addon', cpp: 'the C++ tests', fuzz: 'fuzzing', e2e: 'the e2e tests', demo: 'the demo', browser: 'the browser tests' };
export const groups = Object.keys(groupNames);

function onPath(command) {
  for (const directory of (process.env.PATH ?? '').split(delimiter)) {
    if (!directory) continue;
    try {
      accessSync(join(directory, command), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

// Each `*` component matches any one directory entry.
function fileExists(pattern) {
  const parts = pattern.split('/').filter(Boolean);
  const walk = (base, rest) => {
    if (rest.length === 0) return true;
    const [head, ...tail] = rest;
    if (head !== '*') {
      try {
        accessSync(join(base, head), constants.F_OK);
      } catch {
        return false;
      }
      return walk(join(base, head), tail);
    }
    let entries;
    try {
      entries = readdirSync(base);
    } catch {
      return false;
    }
    return entries.some((entry) => walk(join(base, entry), tail));
  };
  return walk('/', parts);
}

export function isInstalled(entry) {
  return entry.command !== undefined ? onPath(entry.command) : fileExists(entry.file);
}

/** The packages of `wanted` groups that are not installed. */
export function missingPackages(wanted) {
  for (const group of wanted) {
    if (!groups.includes(group)) throw new Error(`system-packages: unknown group "${group}" (groups: ${groups.join(', ')})`);
  }
  return systemPackages.filter((entry) => entry.for.some((group) => wanted.includes(group)) && !isInstalled(entry));
}

/** The message for missing packages: each by name, then one apt-get line for all. */
export function describeMissing(missing, what) {
  const lines = missing.map((entry) => {
    const needed = entry.command !== undefined ? `"${entry.command}" is not on the PATH` : `${entry.file} is missing`;
    return `  ${needed}: install Debian package ${entry.name} (apt-get install ${entry.name}) — ${entry.why}`;
  });
  return [`${what}: ${missing.length === 1 ? 'a Debian package is' : 'Debian packages are'} not installed:`, ...lines,
    `  all at once: apt-get install ${missing.map((entry) => entry.name).join(' ')}`].join('\n');
}

/** Exits the process with status 1, naming what is missing, when a package of `wanted` is absent. */
export function requirePackages(wanted, what) {
  const missing = missingPackages(wanted);
  if (missing.length === 0) return;
  console.error(describeMissing(missing, what));
  process.exit(1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  if (args.length === 0) {
    for (const entry of systemPackages) console.log(entry.name);
  } else if (args[0] === '--check' && args.length > 1 && args.slice(1).every((group) => groups.includes(group))) {
    requirePackages(args.slice(1), args.slice(1).map((group) => groupNames[group]).join(' and '));
  } else {
    for (const group of args.slice(1).filter((group) => !groups.includes(group))) console.error(`system-packages: unknown group "${group}"`);
    console.error(`usage: system-packages.mjs [--check GROUP...]   (groups: ${groups.join(', ')})`);
    process.exit(2);
  }
}

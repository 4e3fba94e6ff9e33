#!/usr/bin/env node
// Builds the pure C++ core with AddressSanitizer + UndefinedBehaviorSanitizer
// (g++), then runs its unit tests and replays every fuzz corpus through ctest.
//
//   node tools/cpp-tests.mjs              configure, build, test (build-cpp/)
//   node tools/cpp-tests.mjs --fuzz NAME [SECONDS]
//                                         build the libFuzzer variant with clang
//                                         (build-fuzz/) and fuzz NAME's corpus
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { requirePackages } from './system-packages.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const jobs = String(Math.max(1, availableParallelism()));

function run(command, args, env = {}) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (result.error) {
    console.error(`cpp-tests: cannot run ${command}: ${result.error.message}`);
    process.exit(1);
  }
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const args = process.argv.slice(2);
if (args[0] === '--fuzz') {
  const name = args[1];
  const seconds = args[2] ?? '60';
  if (!name) {
    console.error('usage: cpp-tests.mjs --fuzz NAME [SECONDS]');
    process.exit(2);
  }
  requirePackages(['cpp', 'fuzz'], 'fuzzing (tools/cpp-tests.mjs --fuzz)');
  run('cmake', ['-S', '.', '-B', 'build-fuzz', '-DL4LB_FUZZ=libfuzzer', '-DL4LB_SANITIZE=ON'], { CXX: 'clang++' });
  run('cmake', ['--build', 'build-fuzz', '--target', `fuzz_${name}`, '-j', jobs]);
  run(`build-fuzz/fuzz_${name}`, [`-max_total_time=${seconds}`, `native/test/corpus/${name}`]);
} else {
  requirePackages(['cpp'], 'the C++ tests (npm run test:cpp)');
  run('cmake', ['-S', '.', '-B', 'build-cpp', '-DL4LB_SANITIZE=ON', '-DL4LB_FUZZ=replay']);
  run('cmake', ['--build', 'build-cpp', '-j', jobs]);
  run('ctest', ['--test-dir', 'build-cpp', '--output-on-failure', '-j', jobs], {
    ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1',
    UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
  });
}

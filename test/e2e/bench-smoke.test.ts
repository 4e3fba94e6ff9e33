// The benchmark harness (npm run bench) is not part of the test suite; this
// one test runs a single 1-second scenario end to end (testbed, calibration,
// l4lb with the AF_PACKET driver, generator and sink) and checks that the
// report it writes is well formed. It asserts nothing about performance.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { assertLabAvailable } from '../../lib/lab/index.js';
import type { BenchReport, UdpScenario } from '../../bench/report/types.js';
import type { UdpRunResult } from '../../bench/throughput/udp.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'l4lb-bench-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectWellFormedRun(run: UdpRunResult | undefined, label: string): void {
  expect(run, label).toBeDefined();
  for (const key of ['offeredPps', 'deliveredPps', 'sent', 'delivered', 'loss', 'systemNsPerPacket', 'durationS'] as const) {
    expect(Number.isFinite(run![key]), `${label}.${key} = ${run![key]}`).toBe(true);
    expect(run![key], `${label}.${key}`).toBeGreaterThanOrEqual(0);
  }
  for (const key of ['p50Us', 'p99Us', 'p999Us', 'maxUs', 'meanUs'] as const) {
    expect(Number.isFinite(run!.latency[key]), `${label}.latency.${key}`).toBe(true);
  }
  expect(run!.sent, `${label}: the generator sent frames`).toBeGreaterThan(0);
  expect(run!.delivered, `${label}: delivered <= sent`).toBeLessThanOrEqual(run!.sent);
  expect(run!.deliveredPps, `${label}: delivered <= offered`).toBeLessThanOrEqual(run!.offeredPps * 1.0001);
  expect(run!.loss).toBeLessThanOrEqual(1);
  expect(run!.cores.length).toBeGreaterThan(0);
  for (const core of run!.cores) expect(core.busy).toBeGreaterThanOrEqual(0);
}

describe('npm run bench', () => {
  it('runs 1-second scenarios (l4lb nat, the AF_XDP floor) and writes a well-formed report (JSON, Markdown, SVG)', async () => {
    await assertLabAvailable();
    const files = { json: join(dir, 'report.json'), markdown: join(dir, 'report.md'), svg: join(dir, 'report.svg') };
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'bench/run.ts', '--scenario', 'l4lb-nat-64b-1f', '--scenario', 'mac-only-af_xdp-64b-1f', '--seconds', '1', '--json', files.json, '--markdown', files.markdown, '--svg', files.svg],
      { cwd: root, timeout: 170_000, maxBuffer: 16 * 1024 * 1024 },
    );
    expect(stdout).toMatch(/l4lb-nat, 64 B, 1 flow/);

    const report = JSON.parse(readFileSync(files.json, 'utf8')) as BenchReport;
    expect(report.version).toBe(1);
    expect(report.mode).toBe('selected');
    expect(report.machine.nproc).toBeGreaterThan(0);
    expect(report.machine.kernel).not.toBe('');
    expectWellFormedRun(report.calibration['64']?.throughput, 'calibration');
    const scenario = report.scenarios.find((s): s is UdpScenario => s.kind === 'udp' && s.name === 'l4lb-nat-64b-1f');
    expect(scenario?.status, scenario?.reason).toBe('ok');
    for (const key of ['throughput', 'latencyLow', 'latencyHigh'] as const) expectWellFormedRun(scenario![key], key);
    expect(Number.isFinite(scenario!.throughput!.forwarderBusyNsPerPacket)).toBe(true);
    expect(Number.isFinite(scenario!.addedNsPerPacket)).toBe(true);
    expect(scenario!.throughput!.delivered, 'l4lb forwarded frames to the sink').toBeGreaterThan(0);
    // The MAC-only forwarder over the AF_XDP driver: its XDP program took the bench's frames and it sent them on.
    const floor = report.scenarios.find((s): s is UdpScenario => s.kind === 'udp' && s.name === 'mac-only-af_xdp-64b-1f');
    expect(floor?.status, floor?.reason).toBe('ok');
    expectWellFormedRun(floor!.throughput, 'mac-only-af_xdp');
    expect(floor!.throughput!.delivered, 'the af_xdp floor forwarded frames to the sink').toBeGreaterThan(0);
    expect(scenario!.ratios?.['mac-only-af_xdp'], 'l4lb against the same-run floor').toBeDefined();
    expect(Array.isArray(report.targets)).toBe(true);

    expect(readFileSync(files.markdown, 'utf8')).toContain('| l4lb-nat, 64 B, 1 flow |');
    const svg = readFileSync(files.svg, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('l4lb-nat');
  }, 180_000);
});

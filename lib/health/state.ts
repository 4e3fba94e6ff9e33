// The health state machine of one backend, as a pure function: the state
// after one check result. Down -> up after `rise` consecutive passes; up ->
// down after `fall` consecutive failures; a result of the other kind resets
// the run. Table-tested in test/unit/health-state.test.ts.

export interface HealthState {
  readonly up: boolean;
  /** Consecutive passes while down. */
  readonly passes: number;
  /** Consecutive failures while up. */
  readonly failures: number;
}

export interface HealthThresholds {
  rise: number;
  fall: number;
}

export interface HealthStep {
  state: HealthState;
  /** True when `up` flipped with this result. */
  changed: boolean;
}

export function initialHealthState(up: boolean): HealthState {
  return { up, passes: 0, failures: 0 };
}

export function nextHealthState(state: HealthState, passed: boolean, { rise, fall }: HealthThresholds): HealthStep {
  if (state.up) {
    if (passed) return { state: { up: true, passes: 0, failures: 0 }, changed: false };
    const failures = state.failures + 1;
    if (failures >= fall) return { state: { up: false, passes: 0, failures: 0 }, changed: true };
    return { state: { up: true, passes: 0, failures }, changed: false };
  }
  if (!passed) return { state: { up: false, passes: 0, failures: 0 }, changed: false };
  const passes = state.passes + 1;
  if (passes >= rise) return { state: { up: true, passes: 0, failures: 0 }, changed: true };
  return { state: { up: false, passes, failures: 0 }, changed: false };
}

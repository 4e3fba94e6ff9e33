// Public exports of l4lb.
export { L4lbError, ValidationError, LabError } from './errors.js';
export { Lab, Host, LabProcess } from './lab/index.js';
export {
  StateError,
  DriverError,
  SchedulerHookError,
  DataPlaneError,
} from './errors.js';
export { LoadBalancer, type LoadBalancerEvents } from './load-balancer.js';
export { Service } from './service.js';
export { Backend } from './backend.js';
export { MemoryPort, type TakeOptions, type DataPlaneDriver, type DriverInterface, type NextHop, type DriverRoute } from './driver/index.js';
export { serveDashboard, validateDashboardOptions, dashboardDefaults, type Dashboard, type DashboardOptions, type DashboardSnapshot, type DashboardSource } from './dashboard/index.js';
export { createMetricsRegistry, type MetricsOptions, type StatsSource } from './stats/metrics.js';
export { validateHookTable, weightedTable, maxHookTableLength } from './schedulers/hook.js';
export {
  validateLoadBalancerOptions,
  validateServiceOptions,
  validateBackendOptions,
  validateHealthCheck,
  defaults,
  limits,
} from './config/validate.js';
export { nextHealthState, initialHealthState, type HealthState, type HealthThresholds } from './health/state.js';
export type * from './config/types.js';
export * as realserver from './realserver/index.js';

// The live dashboard (docs: README "Dashboard", docs/cli.md `--dashboard`).
export { serveDashboard, type Dashboard, type DashboardSnapshot, type DashboardSource } from './server.js';
export { type DashboardOptions, dashboardDefaults, parseDashboardAddress, validateDashboardOptions } from './options.js';

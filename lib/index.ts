// Public exports of l4lb.
export { L4lbError, ValidationError, LabError } from './errors.js';
export { Lab, Host, LabProcess } from './lab/index.js';

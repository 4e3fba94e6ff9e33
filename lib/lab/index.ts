export { Lab, Host, assertLabAvailable, labNamespacePrefix } from './lab.js';
export type { CommandResult, HostOptions, LinkEnd, LinkOptions, SegmentMember, InterfaceInfo } from './lab.js';
export { LabProcess } from './process.js';
export { isLabAddress, parseLabPrefix } from './addresses.js';
export type { ParsedPrefix } from './addresses.js';

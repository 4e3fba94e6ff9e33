import { L4lbError } from '../errors.js';

/**
 * Real-server setup could not do what was asked: a command failed
 * ('ECOMMAND'), a tool is missing ('ENO_TOOL'), the namespace or interface
 * does not exist ('ENO_NETNS', 'ENO_INTERFACE'), the VIP is already set up
 * differently ('EALREADY_UP'), a resource is taken ('ETABLE_IN_USE',
 * 'EDEVICE_IN_USE'), the state file is unreadable ('ESTATE'), or the
 * decapsulator failed to start ('ENETNS', 'ESOCKET', 'ETUN', 'ETHREAD').
 * Bad input is a ValidationError instead.
 */
export class RealServerError extends L4lbError {}

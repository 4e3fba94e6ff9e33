#!/usr/bin/env node
// The `l4lb` executable (package.json "bin"): runs the command line and
// exits with the command's status (docs/cli.md).
import { runCli } from './program.js';

const code = await runCli(process.argv);
process.exitCode = code;
// Long-running commands end by closing everything they opened; should
// anything still hold the event loop (a library timer, a stuck socket), the
// status must still reach the caller.
setTimeout(() => process.exit(code), 2000).unref();

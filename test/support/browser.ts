// Headless Chromium for the dashboard's browser tests, driven by
// playwright-core (no browser download: Debian's chromium at
// /usr/bin/chromium, or $CHROMIUM). These tests never skip: without the
// browser they fail naming the package to install.
import { accessSync, constants } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Throws, naming the Debian package, when there is no Chromium to run. */
export function assertChromium(): void {
  try {
    accessSync(chromiumPath, constants.X_OK);
  } catch {
    throw new Error(
      `the dashboard's browser tests need headless Chromium at ${chromiumPath}: install Debian package chromium (apt-get install chromium), or set CHROMIUM to a Chromium binary`,
    );
  }
}

export async function launchChromium(): Promise<Browser> {
  assertChromium();
  // As root Chromium cannot use its sandbox; playwright starts it with --no-sandbox.
  return chromium.launch({ executablePath: chromiumPath, headless: true, timeout: 60_000 });
}

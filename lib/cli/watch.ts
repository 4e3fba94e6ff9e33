// `l4lb run --watch`: a change of the configuration file triggers a reload.
// Editors save by writing a new file and renaming it over the old one, which
// ends a watch on the file itself; the directory is watched instead, and a
// burst of events (truncate, write, rename) becomes one reload after a pause.
import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

export function watchConfigFile(file: string, onChange: () => void, debounceMs = 250): { close(): void } {
  const name = basename(file);
  let timer: NodeJS.Timeout | undefined;
  const watcher: FSWatcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
    if (changed !== null && changed.toString() !== name) return;
    clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
  });
  watcher.on('error', () => {});
  return {
    close() {
      clearTimeout(timer);
      watcher.close();
    },
  };
}

// The C++ tier replays an export of the packet fixtures; this keeps the two
// from drifting apart.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { engineCorpusDir, exportFixtures, fixturesPath } from '../../tools/export-fixtures.js';

describe('exported packet fixtures', () => {
  it('native/test/fixtures/packets.txt and the engine corpus are current (npm run fixtures:export)', () => {
    const { table, corpus } = exportFixtures();
    expect(readFileSync(fixturesPath, 'utf8')).toBe(table);
    expect(readdirSync(engineCorpusDir).filter((name) => name.startsWith('fixture-')).sort()).toEqual([...corpus.keys()].sort());
    for (const [name, bytes] of corpus) expect(readFileSync(`${engineCorpusDir}${name}`).equals(bytes), name).toBe(true);
  });
});

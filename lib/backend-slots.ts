// Backend slots: each backend holds one slot (the index of its counters in
// the statistics region and of its active-flow count) and an id
// `slot | generation << 16` that the data plane's flows store. A slot's
// generation advances every time it is handed out, so a flow of a removed
// backend never matches the slot's next occupant; freed slots are reused
// oldest first, and preferably once no flow counts against them any more.

export class BackendSlots {
  #fresh = 0;
  readonly #free: number[] = [];
  readonly #generation: Uint16Array;

  constructor(readonly capacity: number) {
    this.#generation = new Uint16Array(capacity);
  }

  /** A slot and its new id, or undefined when every slot is in use. */
  allocate(activeFlows: (slot: number) => number): { slot: number; id: number } | undefined {
    let slot: number | undefined;
    if (this.#fresh < this.capacity) {
      slot = this.#fresh++;
    } else if (this.#free.length > 0) {
      const idle = this.#free.findIndex((s) => activeFlows(s) === 0);
      slot = this.#free.splice(idle >= 0 ? idle : 0, 1)[0]!;
    }
    if (slot === undefined) return undefined;
    // Generation 0 is skipped so that no id is 0 past the first pass.
    const generation = (this.#generation[slot]! % 0xffff) + 1;
    this.#generation[slot] = generation;
    return { slot, id: (slot | (generation << 16)) >>> 0 };
  }

  /** A slot whose backend was removed (published): reusable later. */
  release(slot: number): void {
    this.#free.push(slot);
  }

  /** A slot handed out to a draft that was dropped: reusable at once. */
  giveBack(slot: number): void {
    if (slot === this.#fresh - 1) this.#fresh -= 1;
    else this.#free.unshift(slot);
  }
}

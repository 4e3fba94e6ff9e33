// Route announcement of a balancer's VIPs (docs/scale-out.md): BIRD (bird.ts)
// kept in step with the services' health and weights.
import type { NormalizedBgp } from '../config/validate.js';
import type { BgpStats } from '../config/types.js';
import type { RouteAnnouncementError } from '../errors.js';
import { type AnnouncedService, BirdAnnouncer, vipStates } from './bird.js';

export { type AnnouncedService, birdConfig, vipStates, type VipState } from './bird.js';

/** How often the services are read again (health flips also apply at once), and the sessions' states. */
const followMs = 500;
const sessionsMs = 2000;

export class VipAnnouncements {
  #timers: NodeJS.Timeout[] = [];

  private constructor(
    private readonly bird: BirdAnnouncer,
    private readonly services: () => readonly AnnouncedService[],
  ) {}

  static async start(options: NormalizedBgp, services: () => readonly AnnouncedService[], onError: (error: RouteAnnouncementError) => void): Promise<VipAnnouncements> {
    const announcements = new VipAnnouncements(await BirdAnnouncer.start(options, onError), services);
    await announcements.poke();
    await announcements.bird.refresh();
    // Unref'd: announcing must not keep a process alive; the balancer's own timers decide that.
    announcements.#timers.push(setInterval(() => void announcements.poke(), followMs).unref());
    announcements.#timers.push(setInterval(() => void announcements.bird.refresh(), sessionsMs).unref());
    return announcements;
  }

  /** Reads the services now and tells BIRD what changed. */
  poke(): Promise<void> {
    return this.bird.update(vipStates(this.services()));
  }

  stats(): BgpStats {
    return this.bird.stats();
  }

  /** Withdraws every VIP and stops BIRD. */
  async close(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers = [];
    await this.bird.close();
  }
}

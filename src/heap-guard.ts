import { getHeapSpaceStatistics } from 'node:v8';

/** Spaces whose objects survived the young generation: what a full collection frees. */
const OLD_SPACES: ReadonlySet<string> = new Set(['old_space', 'large_object_space']);

/** Bytes held in the old generation (a few µs to read: once per fetch, never per hit). */
function oldGenerationBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics()) if (OLD_SPACES.has(space.space_name)) bytes += space.space_used_size;
  return bytes;
}

/** What the guard calls to collect: V8's gc() when Node runs with --expose-gc. */
export type Collect = NonNullable<typeof globalThis.gc>;

/**
 * Keeps a storm of misses from growing the heap far past what it holds.
 *
 * Each miss parses and renders a body and leaves its garbage behind; V8 lets
 * the heap grow up to fourfold past what the last full collection kept
 * before it collects again, which under a storm of distinct queries put peak
 * RSS some 150 MiB above the cache's bound. (The young generation is left to
 * V8: its garbage is cheap to collect and does not raise that limit.)
 * Tightening V8's growth for the whole process (`--heap-growing-percent`) kept it down but kept V8 marking
 * all the time, which cost cache hits a fifth of their speed. So the misses
 * pay instead: after a fetch, when the old generation has grown
 * `headroomBytes` past what the last collection kept, one full collection
 * is started (in its own task, not on the request's stack). Hits never call
 * this; a storm of misses costs about twice the CPU (see app.ts).
 *
 * Needs `node --expose-gc` (npm start and the image run with it); without
 * it, V8's own heuristics decide, as in tests.
 */
export class HeapGuard {
  readonly #headroomBytes: number;
  readonly #collect: Collect | undefined;
  #limitBytes = 0;
  #collecting = false;

  constructor(headroomBytes: number, collect: Collect | undefined = globalThis.gc) {
    this.#headroomBytes = headroomBytes;
    this.#collect = collect;
  }

  /** Whether collections can be started (Node runs with --expose-gc). */
  get active(): boolean {
    return this.#collect !== undefined;
  }

  /** Called after each fetch from Deskie: starts a collection when the heap has grown past its headroom. */
  afterFetch(): void {
    if (this.#collect === undefined || this.#collecting) return;
    const used = oldGenerationBytes();
    if (this.#limitBytes === 0) this.#limitBytes = used + this.#headroomBytes;
    if (used < this.#limitBytes) return;
    this.#collecting = true;
    this.#collect({ type: 'major', execution: 'async' }).then(
      () => {
        this.#limitBytes = oldGenerationBytes() + this.#headroomBytes;
        this.#collecting = false;
      },
      /* c8 ignore next: V8's gc() does not fail */
      () => (this.#collecting = false),
    );
  }
}

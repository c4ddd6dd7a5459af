/**
 * The KV memory of the scheduling model: a paged allocator that hands out real page ids, and a
 * radix-style prefix cache of prompt blocks (keyed by Mooncake prefix-block hashes) that holds
 * pages of the same pool until it evicts them.
 */

/**
 * A FIFO free list of KV page ids. SGLang allocates from the head and returns freed pages at the
 * tail, so page ids are reused in the order they were freed; the page tables the attention kernels
 * see depend on that order.
 */
export class PagePool {
  readonly size: number;
  private readonly free: Int32Array;
  private head = 0;
  /** Pages free now. */
  count: number;

  constructor(size: number) {
    this.size = size;
    this.count = size;
    this.free = new Int32Array(size);
    for (let i = 0; i < size; i++) this.free[i] = i;
  }

  /** Moves `n` page ids from the head of the free list to the end of `into`. */
  alloc(n: number, into: number[]): void {
    if (n > this.count) throw new Error(`internal: allocating ${n} pages with ${this.count} free`);
    for (let i = 0; i < n; i++) {
      into.push(this.free[this.head]);
      this.head = this.head + 1 === this.size ? 0 : this.head + 1;
    }
    this.count -= n;
  }

  /** Returns `pages[from..]` to the tail of the free list. */
  release(pages: ArrayLike<number>, from: number): void {
    for (let i = from; i < pages.length; i++) {
      this.free[(this.head + this.count) % this.size] = pages[i];
      this.count++;
    }
  }
}

/** One cached prompt block: its pages, and how many requests and child blocks hold it. */
export interface CacheBlock {
  hash: number;
  parent: number | null;
  pages: number[];
  refs: number;
  children: number;
}

/** Cached prompt blocks by hash, in LRU order; their pages belong to the pool until evicted. */
export class PrefixCache {
  // Map insertion order is the LRU order: touching a block moves it to the end.
  private readonly blocks = new Map<number, CacheBlock>();

  constructor(private readonly pool: PagePool) {}

  /** The block with this hash, if cached (without touching it). */
  get(hash: number): CacheBlock | undefined {
    return this.blocks.get(hash);
  }

  /** Whether a block with this hash is cached. */
  has(hash: number): boolean {
    return this.blocks.has(hash);
  }

  /** Marks a block most recently used. */
  touch(b: CacheBlock): void {
    this.blocks.delete(b.hash);
    this.blocks.set(b.hash, b);
  }

  /** Adds a block (most recently used), counting it as a child of its cached parent. */
  insert(b: CacheBlock): void {
    if (b.parent !== null) {
      const p = this.blocks.get(b.parent);
      if (p) p.children++;
    }
    this.blocks.set(b.hash, b);
  }

  /** Pages held by blocks no request references (what eviction could free, given time). */
  evictable(): number {
    let n = 0;
    for (const b of this.blocks.values()) if (b.refs === 0) n += b.pages.length;
    return n;
  }

  /** Evicts unreferenced leaves in LRU order until `need` pages are free (or nothing is left). */
  evict(need: number): void {
    const pool = this.pool;
    // Evicting a leaf can make its parent a leaf, so sweep again while a sweep made progress.
    let progress = true;
    while (pool.count < need && progress) {
      progress = false;
      for (const b of this.blocks.values()) {
        if (b.refs === 0 && b.children === 0) {
          this.blocks.delete(b.hash);
          if (b.parent !== null) {
            const p = this.blocks.get(b.parent);
            if (p) p.children--;
          }
          pool.release(b.pages, 0);
          progress = true;
          if (pool.count >= need) break;
        }
      }
    }
  }
}

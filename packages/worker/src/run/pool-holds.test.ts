import { describe, expect, it } from 'vitest';
import { PoolHolds, WAITING_GRACE_MS } from './pool-holds.js';

const wait = (fetched: number, waitEnd: number, fairShare = false) => ({ lane: 'normal' as const, pool: 'sonnet', fetched, waitEnd, fairShare });

describe('PoolHolds: jobs told to wait, ahead of later ones', () => {
  it('puts a waiting job ahead of the jobs of its pool and lane fetched after it, and of no others', () => {
    const holds = new PoolHolds();
    holds.waited('a', wait(3, 1_100));
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000)).toEqual({ waitMs: 100, fairShare: false });
    // Fetched before it, in another lane, of another pool, or the job itself: not behind it.
    expect(holds.ahead('c', 'normal', 'sonnet', 2, false, 1_000)).toBeUndefined();
    expect(holds.ahead('b', 'high', 'sonnet', 5, false, 1_000)).toBeUndefined();
    expect(holds.ahead('b', 'normal', 'haiku', 5, false, 1_000)).toBeUndefined();
    expect(holds.ahead('a', 'normal', 'sonnet', 9, false, 1_000)).toBeUndefined();
    // Granted (or ended) here, it waits no more.
    holds.done('a');
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000)).toBeUndefined();
  });

  it('keeps a job fetched again after going back at its first place, so two jobs never each yield to the other', () => {
    const holds = new PoolHolds();
    holds.waited('a', wait(3, 1_100));
    holds.waited('b', wait(5, 1_100));
    // A comes back as this worker's 8th fetch and is told to wait again: still ahead of B.
    holds.waited('a', wait(8, 1_200));
    expect(holds.ahead('a', 'normal', 'sonnet', 8, false, 1_000)).toBeUndefined();
    expect(holds.ahead('b', 'normal', 'sonnet', 9, false, 1_000)).toEqual({ waitMs: 200, fairShare: false });
  });

  it("lets a fresh tenant's job pass a wait the fair reserve alone caused", () => {
    const holds = new PoolHolds();
    holds.waited('a', wait(3, 1_050, true));
    expect(holds.ahead('b', 'normal', 'sonnet', 5, true, 1_000)).toBeUndefined();
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000)).toEqual({ waitMs: 50, fairShare: true });
  });

  it('stops holding later jobs back for a job back in its lane once this worker fetches another of its pool and lane', () => {
    const holds = new PoolHolds();
    holds.sending(4);
    holds.waited('a', wait(3, 1_500));
    holds.back('a');
    // Still ahead while nothing else of the pool and lane was fetched here.
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000)).toEqual({ waitMs: 500, fairShare: false });
    // Fetched again here: in hand, still ahead until granted.
    holds.sending(6);
    holds.fetched('a', 'normal', 'sonnet', 6);
    holds.back('a');
    // Another job of the pool in another lane says nothing; one in the same lane says A went elsewhere.
    holds.sending(7);
    holds.fetched('c', 'high', 'sonnet', 7);
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000)).toBeDefined();
    holds.sending(8);
    holds.fetched('c', 'normal', 'sonnet', 8);
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000)).toBeUndefined();
  });

  it('takes no fetch sent before a job was back as a sign it went elsewhere: it took the job behind it', () => {
    const holds = new PoolHolds();
    holds.waited('a', wait(3, 1_002, true));
    // Fetch 9 is sent while A's return is still on its way; A's return answers first.
    holds.sending(9);
    holds.back('a');
    holds.fetched('b', 'normal', 'sonnet', 9);
    // B was behind A in the lane: it gives a grant back to A.
    expect(holds.ahead('b', 'normal', 'sonnet', 9, false, 1_003)).toEqual({ waitMs: 1, fairShare: true });
    // A fetch sent after A was back that takes another job says A went elsewhere.
    holds.sending(10);
    holds.fetched('c', 'normal', 'sonnet', 10);
    expect(holds.ahead('b', 'normal', 'sonnet', 9, false, 1_003)).toBeUndefined();
  });

  it('forgets a waiting job some time after its wait ended (another worker took it)', () => {
    const holds = new PoolHolds();
    holds.waited('a', wait(3, 1_000));
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000 + WAITING_GRACE_MS - 1)).toEqual({ waitMs: 1, fairShare: false });
    expect(holds.ahead('b', 'normal', 'sonnet', 5, false, 1_000 + WAITING_GRACE_MS)).toBeUndefined();
  });
});

/**
 * Bounded waits for a stop: a process gives what it holds a moment to finish, then moves on
 * whatever the moment's work is doing (a drain, a stop Redis does not answer, a log flush).
 *
 * ```ts
 * const drained = await within(handler.idle(), graceMs); // false: still busy when the grace ran out
 * ```
 */

/** Whether `promise` fulfilled within `ms` (false when it rejected or was still pending). */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

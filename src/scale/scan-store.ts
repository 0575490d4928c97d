/**
 * What a scan keeps in Redis beside BullMQ's own keys, and the two scripts that keep its counts
 * exact. Jobs are shared: an image (by content) scanned with the same settings is one job and one
 * result, whichever scans asked for it, so each scan counts its jobs, not its files:
 *
 *   diffuse:scans                 sorted set of scan ids by creation time
 *   diffuse:scan:ID               hash: meta (JSON), jobs, done, failed, state (running|cancelled)
 *   diffuse:scan:ID:items         list of JSON items {path, job} or {path, error}, in the files' order
 *   diffuse:settings:SID          JSON: the inspection settings every job of SID runs with
 *   diffuse:job:JID:scans         set of the scans that wait for job JID
 *   diffuse:result:JID            hash: report (JSON), ok (1|0), attempt, runs (inspections that
 *                                 finished: above 1 when a job was taken up again after all)
 *
 * A result is written once (HSETNX): a job taken up again after its worker died, or enqueued
 * again, cannot make a second result, and the scans waiting for it are counted done once, in the
 * same script (Redis runs a script atomically), whichever comes first: the scan registering or
 * the result arriving. Single Redis server only (the scripts touch keys they compute; not Cluster).
 */
import type { Redis } from 'ioredis';
import type { InspectReport } from '../inspect/report.js';

export const PREFIX = 'diffuse';
export const keys = {
  scans: `${PREFIX}:scans`,
  scan: (id: string) => `${PREFIX}:scan:${id}`,
  items: (id: string) => `${PREFIX}:scan:${id}:items`,
  settings: (sid: string) => `${PREFIX}:settings:${sid}`,
  jobScans: (job: string) => `${PREFIX}:job:${job}:scans`,
  result: (job: string) => `${PREFIX}:result:${job}`,
};

/** One file of a scan: the job that inspects its content, or why it could not be enqueued. */
export type ScanItem = { path: string; job: string } | { path: string; error: string };

/**
 * Registers the scan with a job (KEYS: scan hash, job's scans set, result; ARGV: scan id). Returns
 * 2 when the result already exists (the job need not run), 1 when the job is new to this scan, 0
 * when this scan already had it (the same content twice).
 */
const REGISTER = `
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'jobs', 1)
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'done', 1)
  if redis.call('HGET', KEYS[3], 'ok') == '0' then redis.call('HINCRBY', KEYS[1], 'failed', 1) end
  return 2
end
return 1`;

/**
 * Records a job's result once (KEYS: result, job's scans set; ARGV: report JSON, ok 1|0, attempt,
 * scan key prefix) and counts it done in every scan that waits for it. Returns 0 if it existed,
 * or if no scan waits for it any more (every one was deleted while the job was in work).
 */
const RECORD = `
if redis.call('SCARD', KEYS[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'runs', 1)
if redis.call('HSETNX', KEYS[1], 'report', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ok', ARGV[2], 'attempt', ARGV[3])
for _, s in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('HINCRBY', ARGV[4] .. s, 'done', 1)
  if ARGV[2] == '0' then redis.call('HINCRBY', ARGV[4] .. s, 'failed', 1) end
end
return 1`;

/**
 * Lets go of a scan's jobs (KEYS: none; ARGV: scan id, key prefix, then job ids): the scan stops
 * waiting for each, and a job no other scan waits for loses its result (and its waiting list).
 * Returns how many results were deleted.
 */
const RELEASE = `
local deleted = 0
for i = 3, #ARGV do
  local scans = ARGV[2] .. 'job:' .. ARGV[i] .. ':scans'
  redis.call('SREM', scans, ARGV[1])
  if redis.call('SCARD', scans) == 0 then
    deleted = deleted + redis.call('DEL', ARGV[2] .. 'result:' .. ARGV[i])
    redis.call('DEL', scans)
  end
end
return deleted`;

/** Deletes a scan and the results no other scan shares; returns how many results went. */
export async function deleteScan(redis: Redis, scanId: string): Promise<number> {
  let deleted = 0;
  const total = await redis.llen(keys.items(scanId));
  for (let at = 0; at < total; at += 1000) {
    const items = (await redis.lrange(keys.items(scanId), at, at + 999)).map((s) => JSON.parse(s) as ScanItem);
    const jobs = [...new Set(items.flatMap((i) => ('job' in i ? [i.job] : [])))];
    if (jobs.length) deleted += (await redis.eval(RELEASE, 0, scanId, `${PREFIX}:`, ...jobs)) as number;
  }
  await redis.del(keys.scan(scanId), keys.items(scanId));
  await redis.zrem(keys.scans, scanId);
  return deleted;
}

/** Registers `scanId` as waiting for `job`; see REGISTER for the answer. */
export async function registerJob(redis: Redis, scanId: string, job: string): Promise<0 | 1 | 2> {
  return (await redis.eval(REGISTER, 3, keys.scan(scanId), keys.jobScans(job), keys.result(job), scanId)) as 0 | 1 | 2;
}

/** Stores a job's report (once; false if a result was already there): an inspection's report, or what a generation job wrote. */
export async function recordResult(redis: Redis, job: string, report: { file: string; error?: string }, attempt: number): Promise<boolean> {
  const ok = report.error ? '0' : '1';
  return (await redis.eval(RECORD, 2, keys.result(job), keys.jobScans(job), JSON.stringify(report), ok, String(attempt), `${PREFIX}:scan:`)) === 1;
}

/** A stored result: the report as the worker wrote it (its `file` is the first path it was enqueued under). */
export async function readResults(redis: Redis, jobs: readonly string[]): Promise<(InspectReport | undefined)[]> {
  if (!jobs.length) return [];
  const p = redis.pipeline();
  for (const j of jobs) p.hget(keys.result(j), 'report');
  const answers = (await p.exec()) ?? [];
  return answers.map(([e, v]) => (e || v === null || v === undefined ? undefined : (JSON.parse(String(v)) as InspectReport)));
}

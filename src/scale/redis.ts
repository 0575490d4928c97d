/**
 * Connecting to the Redis that carries scans: URLs with passwords that are never printed, one
 * clear line for a server that cannot be reached or refuses the password, and a check of the one
 * setting BullMQ cannot work without (no eviction: an evicted key is a lost job or result).
 */
import { Redis, RedisOptions } from 'ioredis';

/** A problem with the Redis server or its URL, said in one line (the password never in it). */
export class RedisProblem extends Error {}

/** Where the URL comes from when no flag gives it (a flag would show the password in `ps`). */
export const REDIS_URL_ENV = 'DIFFUSE_REDIS_URL';

/** The URL with its password (and user name) replaced by ***: the only form that is ever printed. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return '(an unreadable Redis URL)';
  }
}

/** Checks the URL's form: redis:// or rediss:// (TLS), a host, a port, an optional database number. */
export function checkRedisUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RedisProblem(`not a Redis URL: expected redis://[:PASSWORD@]HOST[:PORT][/DB] or rediss://... for TLS`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RedisProblem(`${redactRedisUrl(url)}: a Redis URL starts with redis:// or rediss:// (TLS), not ${u.protocol}//`);
  if (!u.hostname) throw new RedisProblem(`${redactRedisUrl(url)}: the URL names no host`);
  const db = u.pathname.replace(/^\//, '');
  if (db && !/^\d{1,2}$/.test(db)) throw new RedisProblem(`${redactRedisUrl(url)}: the path must be a database number (0-15), not '${db.slice(0, 20)}'`);
}

/** Why a connection failed, in words, from the last error ioredis reported. */
function reason(url: string, e: (Error & { code?: string }) | undefined): string {
  const where = redactRedisUrl(url);
  const m = e?.message ?? '';
  if (/WRONGPASS/.test(m)) return `${where} refused the user name or password (WRONGPASS)`;
  if (/NOAUTH/.test(m)) return `${where} asks for a password: give it in the URL (redis://:PASSWORD@host:port), best through the ${REDIS_URL_ENV} environment variable`;
  if (e?.code === 'ECONNREFUSED') return `cannot reach Redis at ${where}: nothing listens there (connection refused)`;
  if (e?.code === 'ENOTFOUND' || e?.code === 'EAI_AGAIN') return `cannot reach Redis at ${where}: unknown host`;
  if (e?.code === 'ETIMEDOUT' || /timeout/i.test(m)) return `cannot reach Redis at ${where}: no answer in time`;
  if (/SSL|TLS|certificate|EPROTO/i.test(m) || /^ERR_TLS|^ERR_SSL|CERT/.test(e?.code ?? '')) return `cannot reach Redis at ${where} over TLS: ${m.split('\n')[0].slice(0, 160)}`;
  return `cannot reach Redis at ${where}: ${(e?.code ?? m.split('\n')[0]).slice(0, 160) || 'the connection closed'}`;
}

export interface ConnectOptions {
  /** Give up after one try (commands that answer and exit) instead of reconnecting for ever (workers). */
  once?: boolean;
  /** Called when a long-lived connection fails and retries (workers say it once per outage). */
  onError?: (line: string) => void;
}

/**
 * A connection, tested: the server answers, accepts the password, and does not evict keys (BullMQ
 * needs `maxmemory-policy noeviction`). Throws a RedisProblem otherwise. Connections that are not
 * `once` reconnect for ever after this first success (BullMQ's workers need that).
 */
export async function connectRedis(url: string, o: ConnectOptions = {}): Promise<Redis> {
  checkRedisUrl(url);
  let last: (Error & { code?: string }) | undefined;
  const options: RedisOptions = {
    lazyConnect: true,
    connectTimeout: 5000,
    // BullMQ's blocking commands must not be cut short by a retry limit.
    maxRetriesPerRequest: null,
    retryStrategy: () => null,
  };
  const redis = new Redis(url, options);
  redis.on('error', (e: Error & { code?: string }) => {
    last = e;
  });
  try {
    await redis.connect();
  } catch {
    redis.disconnect();
    throw new RedisProblem(reason(url, last));
  }
  try {
    const policy = await redis.config('GET', 'maxmemory-policy').catch(() => undefined);
    const value = Array.isArray(policy) ? String(policy[1]) : undefined;
    if (value !== undefined && value !== 'noeviction') throw new RedisProblem(`${redactRedisUrl(url)} evicts keys under memory pressure (maxmemory-policy ${value}): jobs and results would vanish; set maxmemory-policy noeviction (docs/SCALE-OUT.md)`);
  } catch (e) {
    redis.disconnect();
    throw e;
  }
  if (!o.once) {
    // From now on: reconnect for ever, a second at first and then every few seconds, and say so.
    redis.options.retryStrategy = (times: number) => Math.min(1000 * times, 5000);
    let down = false;
    redis.removeAllListeners('error');
    redis.on('error', (e: Error & { code?: string }) => {
      if (!down) o.onError?.(`${reason(url, e)}; retrying`);
      down = true;
    });
    redis.on('ready', () => {
      down = false;
    });
  }
  return redis;
}

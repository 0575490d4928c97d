/** A one-line progress display on a terminal; plain periodic lines otherwise (logs, CI). */

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export class ProgressLine {
  private last = 0;
  private readonly tty: boolean;
  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly plainEveryMs = 10_000,
  ) {
    this.tty = Boolean(out.isTTY);
  }

  update(text: string): void {
    const now = Date.now();
    if (this.tty) {
      if (now - this.last < 100) return;
      this.out.write(`\r${text.slice(0, (this.out.columns ?? 120) - 1).padEnd(Math.min(this.out.columns ?? 120, 120) - 1)}`);
    } else {
      if (now - this.last < this.plainEveryMs) return;
      this.out.write(text + '\n');
    }
    this.last = now;
  }

  /** A message on its own line (the bar is redrawn after it). */
  say(text: string): void {
    this.out.write(this.tty ? `\r${' '.repeat(Math.min(this.out.columns ?? 120, 120) - 1)}\r${text}\n` : text + '\n');
    this.last = 0;
  }

  done(): void {
    if (this.tty) this.out.write('\n');
  }
}

// Cancelling a statement: a CancelRequest goes on a new transport connection that carries the
// backend's key and nothing else, and goes again if the server dropped it.

import { cancelRequest } from "./_frontend.ts";
import type { TlsSettings, Transport } from "./transport.ts";

const CANCEL_TIMEOUT_MS = 10_000;
/** How long a cancelled statement may run on before the cancel is sent again, doubling. */
const RECANCEL_MS = 100;
const RECANCEL_MAX_MS = 2000;

/**
 * Asks the server to cancel what backend `processId` is running. Resolves once the server has
 * read the request (it closes the connection then), or after 10 s at the latest.
 */
export async function sendCancelRequest(
  transport: Transport,
  target: { host: string; port: number; tls: TlsSettings | null },
  processId: number,
  secretKey: Uint8Array,
): Promise<void> {
  const stream = await transport.connect({
    ...target,
    signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS),
    keepAlive: false,
  });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => stream.close(), CANCEL_TIMEOUT_MS);
    stream.start({
      data() {},
      close() {
        clearTimeout(timer);
        resolve();
      },
    });
    stream.write(cancelRequest(processId, secretKey));
  });
}

/**
 * Cancels the statement running now with `cancel`. A CancelRequest that reaches the backend
 * before it has begun the statement (a queued one whose turn has just come, on a busy server)
 * is dropped, so while it is still the one `running()` `wait` ms after a request was taken,
 * another goes, less and less often. The wait is at least twice what the request took, so
 * that on a slow network the first one's answer (57014) has time to arrive: a request sent
 * after the statement ended would hit the one behind it.
 */
export function cancelQuietly(
  cancel: () => Promise<void>,
  running: () => boolean,
  wait = RECANCEL_MS,
): void {
  const started = Date.now();
  // The caller already has its rejection; a failed cancel only means the query runs on.
  cancel().then(() => {
    if (!running()) return;
    wait = Math.max(wait, 2 * (Date.now() - started));
    setTimeout(() => {
      if (running()) cancelQuietly(cancel, running, Math.min(wait * 2, RECANCEL_MAX_MS));
    }, wait);
  }, () => {});
}

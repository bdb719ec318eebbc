// CancelRequest: a new transport connection that carries the backend's key and nothing else.

import { cancelRequest } from "./_frontend.ts";
import type { TlsSettings, Transport } from "./transport.ts";

const CANCEL_TIMEOUT_MS = 10_000;

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

// A TCP proxy on 127.0.0.1 in front of a local server, for tests that cut the network path to
// PostgreSQL while the service runs. Cutting it closes every connection at once and resets new
// ones, as a failed network path or a failover does, and restoring it lets new connections
// through again. It can also cut itself right after a client sends a given text, so that the
// server receives that message but its reply is lost, as with a connection that fails after the
// server received COMMIT.
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Closes every open connection and resets new ones until restore(). */
  cut(): void;
  /** Lets new connections through again. */
  restore(): void;
  /**
   * Cuts the proxy as soon as a client sends data that contains `marker`. That data still
   * reaches the server, and every reply after it is dropped. The returned promise resolves once
   * the proxy is cut.
   */
  cutAfterClientSends(marker: string): Promise<void>;
  /** Number of connections cut so far, open or new. */
  cutConnections(): number;
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket;
}

/** Starts a proxy that forwards every connection to 127.0.0.1:`targetPort`. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  let isCut = false;
  let cutCount = 0;
  let trigger: { marker: Buffer; onCut: () => void } | undefined;

  const cutPair = (pair: Pair, serverGrace: boolean): void => {
    cutCount += 1;
    pair.client.destroy();
    if (serverGrace) {
      // The server still reads what it received before the end of the stream, so the last
      // message is processed although its reply is dropped.
      pair.server.end();
    } else {
      pair.server.destroy();
    }
    pairs.delete(pair);
  };

  const cutAll = (serverGrace: boolean): void => {
    isCut = true;
    for (const pair of [...pairs]) {
      cutPair(pair, serverGrace);
    }
  };

  const server: Server = createServer((client) => {
    // Resets and closes are expected here; the service under test reports them.
    client.on('error', () => {});
    if (isCut) {
      cutCount += 1;
      client.destroy();
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    upstream.on('error', () => client.destroy());
    const pair: Pair = { client, server: upstream };
    pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (!pairs.has(pair)) {
        return;
      }
      upstream.write(chunk);
      if (trigger !== undefined && chunk.includes(trigger.marker)) {
        const { onCut } = trigger;
        trigger = undefined;
        cutAll(true);
        onCut();
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (pairs.has(pair)) {
        client.write(chunk);
      }
    });
    client.on('close', () => {
      if (pairs.delete(pair)) {
        upstream.end();
      }
    });
    upstream.on('close', () => {
      if (pairs.delete(pair)) {
        client.destroy();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new Error(`expected a TCP address, got ${String(address)}`);
  }
  return {
    port: address.port,
    cut: () => cutAll(false),
    restore: () => {
      isCut = false;
    },
    cutAfterClientSends: (marker) =>
      new Promise<void>((resolve) => {
        trigger = { marker: Buffer.from(marker, 'utf8'), onCut: resolve };
      }),
    cutConnections: () => cutCount,
    close: async () => {
      trigger = undefined;
      cutAll(false);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

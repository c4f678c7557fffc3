// TCP servers on 127.0.0.1 that stand in for a PostgreSQL server that does not work. One accepts
// connections and never sends a byte, as a frozen server or a half-open network path does.
// Another accepts every login and then never replies to a query, as a server that stops after
// the login does. The last rejects every login with a given SQLSTATE, as a server does for a wrong
// password.
import { createServer, type Server, type Socket } from 'node:net';

export interface FakeServer {
  port: number;
  /** Number of TCP connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

async function listen(onConnection: (socket: Socket) => void): Promise<FakeServer> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    // A client that gives up resets the socket; that is expected here.
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new Error(`expected a TCP address, got ${String(address)}`);
  }
  return {
    port: address.port,
    connections: () => accepted,
    close: async () => {
      for (const socket of sockets) {
        socket.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Starts a server that accepts connections, reads what clients send, and never replies. */
export function startSilentServer(): Promise<FakeServer> {
  return listen((socket) => socket.resume());
}

/**
 * Starts a server that accepts each login and then reads queries without replying. It replies to
 * the startup message with AuthenticationOk ('R', code 0) and ReadyForQuery ('Z', idle), after
 * which node-postgres 8.23 reports the connection ready (protocol version 3).
 */
export function startStalledServer(): Promise<FakeServer> {
  const authenticationOk = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
  const readyForQuery = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
  return listen((socket) => {
    socket.once('data', () => socket.write(Buffer.concat([authenticationOk, readyForQuery])));
    socket.resume();
  });
}

/**
 * Starts a server that replies to each client's first message with a FATAL ErrorResponse
 * carrying `code` and `message`, as PostgreSQL does for a rejected login (protocol version 3,
 * message type 'E'). Clients here do not request TLS, so that first message is the startup
 * message.
 */
export function startRejectingServer(code: string, message: string): Promise<FakeServer> {
  const fields = Buffer.concat([
    Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0`, 'utf8'),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header.write('E', 0, 'ascii');
  header.writeInt32BE(fields.length + 4, 1);
  const errorResponse = Buffer.concat([header, fields]);
  return listen((socket) => {
    socket.once('data', () => socket.end(errorResponse));
  });
}

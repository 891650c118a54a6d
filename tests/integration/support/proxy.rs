//! A tiny TCP fault-injection proxy (think Toxiproxy) for tests.
//!
//! [`FaultProxy`] listens on 127.0.0.1 and forwards bytes to an upstream
//! address. Its [`Mode`] can be switched at run time and affects existing
//! connections (except where noted) as well as new ones.
//! [`FaultProxy::silence_open_connections`] black-holes only the connections
//! open at the call (a silent drop of warm connections while new ones work).
//!
//! The proxy's own kernel still ACKs every byte it swallows, so TCP keepalive
//! and `tcp_user_timeout` never fire through it; for that, see
//! `super::netns::KernelBlackHole`.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::free_port;

/// Size of the forwarding buffer, i.e. the largest forwarded chunk.
const CHUNK: usize = 16 * 1024;
/// Listen backlog of the proxy socket.
const BACKLOG: u32 = 1024;

/// What the proxy does to traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything (the default).
    Pass,
    /// New connects are refused (`ECONNREFUSED`): the port stays reserved
    /// but nothing listens. Existing connections keep passing traffic.
    Refuse,
    /// Reset (RST) every open connection when the mode is set, and every new
    /// connection right after accepting it.
    Reset,
    /// Accept connections but forward nothing in either direction: bytes are
    /// read and dropped, connections stay open. Connections accepted in this
    /// mode are never connected upstream, so they stay black holes for life;
    /// sessions that lost bytes are broken for good even after switching back
    /// to [`Mode::Pass`], so discard their clients.
    BlackHole,
    /// Delay each forwarded chunk (in both directions) by this long, using
    /// `tokio::time` (so a paused test clock applies).
    Latency(Duration),
    /// For connections accepted while this mode is set: once this many bytes
    /// have been forwarded server→client, reset both sides (the reset may
    /// discard some of those bytes still in flight, so the client receives
    /// at most this many). Other connections pass.
    CutAfter(usize),
}

/// A TCP proxy on 127.0.0.1 with a runtime-switchable [`Mode`].
///
/// Must be created and used inside a tokio runtime. Dropping it resets every
/// proxied connection and stops the accept loop; the port closes once the
/// runtime has run the aborted task (at the next yield).
///
/// When the upstream refuses (server down), the proxy has already accepted
/// the client, so the client sees a reset (`ConnectionReset`), not
/// `ConnectionRefused`.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    acceptor: JoinHandle<()>,
}

/// State shared by the handle, the accept loop and the connection tasks.
struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    accepted: AtomicUsize,
    next_id: AtomicU64,
    /// The open connections, by connection id.
    connections: Mutex<HashMap<u64, Connection>>,
}

/// The proxy's handle on one open connection.
struct Connection {
    /// Dropping or firing it makes the connection task reset its sockets.
    kill: oneshot::Sender<Kill>,
    /// The client's address (its port is the client socket's local port).
    client: SocketAddr,
    state: Arc<ConnectionState>,
}

/// What the handle and a connection task share about the connection.
#[derive(Default)]
struct ConnectionState {
    /// Set once the connection is silenced: it forwards nothing from then on.
    silenced: AtomicBool,
    /// The client closed (or broke) its end after the connection was silenced.
    client_closed: AtomicBool,
    /// The server did, after the connection was silenced.
    server_closed: AtomicBool,
    /// The proxy's local address towards the upstream once connected (what
    /// the server sees as the client, e.g. `pg_stat_activity.client_port`).
    upstream_local: Mutex<Option<SocketAddr>>,
}

/// What [`FaultProxy::connections`] tells about one open connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxiedConnection {
    /// The proxy's id of the connection (increasing in accept order).
    pub id: u64,
    /// The client's address, as the proxy sees it.
    pub client: SocketAddr,
    /// The proxy's local address towards the upstream; `None` before the
    /// upstream connect completed and for black-holed accepts.
    pub upstream_local: Option<SocketAddr>,
    /// Whether the connection has been silenced.
    pub silenced: bool,
    /// Whether the client closed its end after the connection was silenced
    /// (the proxy told the server nothing).
    pub client_closed: bool,
    /// Whether the server closed its end after the connection was silenced
    /// (the proxy told the client nothing).
    pub server_closed: bool,
}

/// Asks a connection task to reset its sockets; it drops the ack when done.
struct Kill {
    _ack: oneshot::Sender<()>,
}

/// Requests to the accept loop.
enum Control {
    /// Listen (`true`) or hold the port without listening (`false`).
    Listen(bool, oneshot::Sender<io::Result<()>>),
}

/// The accept loop's socket: listening, or bound only (refusing connects).
enum Port {
    Listening(TcpListener),
    Held(TcpSocket),
}

/// How a connection ended.
enum Ending {
    /// Both directions reached EOF: close normally.
    Closed,
    /// Reset requested, byte limit reached or an I/O error: RST both sides.
    Abort,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on a free 127.0.0.1 port outside the
    /// kernel's ephemeral range, in [`Mode::Pass`].
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let (listener, addr) = bind_free_listener();
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            accepted: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });
        let (control, control_rx) = mpsc::unbounded_channel();
        let acceptor = tokio::spawn(accept_loop(Arc::clone(&shared), listener, addr, control_rx));
        FaultProxy {
            addr,
            shared,
            control,
            acceptor,
        }
    }

    /// The proxy's listening address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The upstream address traffic is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    /// Switches the mode. When this returns the mode is fully in effect:
    /// for [`Mode::Refuse`] the port no longer listens, for [`Mode::Reset`]
    /// every connection open before the call has been reset, and no chunk
    /// read after the call is forwarded under the old mode.
    pub async fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
        self.set_listening(mode != Mode::Refuse).await;
        if mode == Mode::Reset {
            self.reset_all().await;
        }
    }

    /// Connections accepted since start or the last [`FaultProxy::reset_counts`],
    /// including ones reset or black-holed right away. Refused connects never
    /// reach the proxy and are not counted.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Sets [`FaultProxy::accepted`] back to zero.
    pub fn reset_counts(&self) {
        self.shared.accepted.store(0, Ordering::SeqCst);
    }

    /// Proxied connections currently open.
    pub fn open_connections(&self) -> usize {
        lock(&self.shared.connections).len()
    }

    /// The open connections, in accept order.
    pub fn connections(&self) -> Vec<ProxiedConnection> {
        let mut list: Vec<_> = lock(&self.shared.connections)
            .iter()
            .map(|(&id, connection)| {
                let state = &connection.state;
                ProxiedConnection {
                    id,
                    client: connection.client,
                    upstream_local: *lock(&state.upstream_local),
                    silenced: state.silenced.load(Ordering::SeqCst),
                    client_closed: state.client_closed.load(Ordering::SeqCst),
                    server_closed: state.server_closed.load(Ordering::SeqCst),
                }
            })
            .collect();
        list.sort_by_key(|connection| connection.id);
        list
    }

    /// Silently drops every connection open now, in both directions: from
    /// the call on, bytes read from either side are discarded, and neither
    /// side learns anything (no FIN, no RST): when one side closes, the other
    /// is not told, and the connection stays listed (see
    /// [`ProxiedConnection::client_closed`]) until both sides have closed,
    /// a [`Mode::Reset`], or the proxy drops. Connections accepted later
    /// pass as the mode says. A chunk whose write was already under way may
    /// still arrive; no chunk read after the call is forwarded. Returns how
    /// many connections were newly silenced.
    ///
    /// This is the "network path to warm idle connections died" fault: the
    /// proxy's kernel still ACKs, so only an application-level check (a
    /// query with a timeout) finds these connections dead.
    pub fn silence_open_connections(&self) -> usize {
        lock(&self.shared.connections)
            .values()
            .filter(|connection| !connection.state.silenced.swap(true, Ordering::SeqCst))
            .count()
    }

    /// Silences one open connection (see
    /// [`FaultProxy::silence_open_connections`]); returns false when no
    /// connection with this id is open.
    pub fn silence_connection(&self, id: u64) -> bool {
        lock(&self.shared.connections)
            .get(&id)
            .inspect(|connection| connection.state.silenced.store(true, Ordering::SeqCst))
            .is_some()
    }

    /// Open connections that have been silenced.
    pub fn silenced_connections(&self) -> usize {
        lock(&self.shared.connections)
            .values()
            .filter(|connection| connection.state.silenced.load(Ordering::SeqCst))
            .count()
    }

    /// Has the accept loop listen or stop listening, and waits until it has.
    async fn set_listening(&self, listen: bool) {
        let (ack, done) = oneshot::channel();
        self.control
            .send(Control::Listen(listen, ack))
            .expect("proxy accept loop is gone");
        done.await
            .expect("proxy accept loop is gone")
            .unwrap_or_else(|e| panic!("proxy {}: cannot (un)listen: {e}", self.addr));
    }

    /// Resets every open connection and waits until each has closed.
    async fn reset_all(&self) {
        let connections: Vec<_> = lock(&self.shared.connections).drain().collect();
        let mut acks = Vec::new();
        for (_, connection) in connections {
            let (ack, done) = oneshot::channel();
            if connection.kill.send(Kill { _ack: ack }).is_ok() {
                acks.push(done);
            }
        }
        for done in acks {
            let _ = done.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Dropping the kill switches makes every connection task close.
        lock(&self.shared.connections).clear();
    }
}

impl Shared {
    /// The current mode.
    fn mode(&self) -> Mode {
        *lock(&self.mode)
    }
}

/// Locks `mutex`, ignoring poisoning (a panicking test must not cascade).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds a listener on a random free port outside the ephemeral range.
fn bind_free_listener() -> (TcpListener, SocketAddr) {
    let mut last_error = None;
    for _ in 0..100 {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        match bind_port(addr).and_then(|socket| socket.listen(BACKLOG)) {
            Ok(listener) => return (listener, addr),
            Err(e) => last_error = Some(e),
        }
    }
    panic!("proxy: no free port: {last_error:?}");
}

/// A socket bound to `addr` with `SO_REUSEPORT`, so a second socket can hold
/// the port while the listening one closes (see [`Mode::Refuse`]).
///
/// Deliberately without `SO_REUSEADDR`: Linux lets a `SO_REUSEADDR` socket
/// (such as std's listeners or PostgreSQL's in another test process) bind a
/// port whose other sockets all have `SO_REUSEADDR` and none listens, so a
/// held port would look free to them and could be taken.
fn bind_port(addr: SocketAddr) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// Accepts connections and serves control requests until the proxy drops.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut port = Port::Listening(listener);
    loop {
        let request = match &port {
            Port::Listening(listener) => tokio::select! {
                biased;
                request = control.recv() => request,
                accepted = listener.accept() => {
                    if let Ok((stream, client_addr)) = accepted {
                        on_accept(&shared, stream, client_addr);
                    }
                    continue;
                }
            },
            Port::Held(_) => control.recv().await,
        };
        let Some(Control::Listen(listen, ack)) = request else {
            return;
        };
        let result;
        (port, result) = switch_port(port, listen, addr);
        let _ = ack.send(result);
    }
}

/// Moves the port to listening or held-only state.
fn switch_port(port: Port, listen: bool, addr: SocketAddr) -> (Port, io::Result<()>) {
    match (port, listen) {
        (Port::Held(socket), true) => match socket.listen(BACKLOG) {
            Ok(listener) => (Port::Listening(listener), Ok(())),
            // `listen` consumed the socket: take the port again, refusing.
            Err(e) => (hold_or_panic(addr), Err(e)),
        },
        (Port::Listening(listener), false) => match bind_port(addr) {
            // Bind the holder before closing the listener: the port is never free.
            Ok(socket) => {
                stop_listening(listener);
                (Port::Held(socket), Ok(()))
            }
            Err(e) => (Port::Listening(listener), Err(e)),
        },
        (port, _) => (port, Ok(())),
    }
}

/// Closes `listener` so that new connects are refused at once.
///
/// Closing alone is not enough: a child process that another test thread is
/// spawning holds a copy of every descriptor between its fork and its exec,
/// so the socket may go on listening for a moment after `close` (connects
/// then succeed and get reset). `shutdown(SHUT_RD)` on a listening socket
/// stops it listening right away on Linux, whoever else holds it.
fn stop_listening(listener: TcpListener) {
    if let Ok(listener) = listener.into_std() {
        let socket = std::net::TcpStream::from(OwnedFd::from(listener));
        let _ = socket.shutdown(Shutdown::Read);
    }
}

/// A held (bound, not listening) socket on `addr`; panics if impossible.
fn hold_or_panic(addr: SocketAddr) -> Port {
    Port::Held(bind_port(addr).unwrap_or_else(|e| panic!("proxy: cannot rebind {addr}: {e}")))
}

/// Counts a new connection and resets it or hands it to a connection task.
fn on_accept(shared: &Arc<Shared>, client: TcpStream, client_addr: SocketAddr) {
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let mode = shared.mode();
    if matches!(mode, Mode::Reset | Mode::Refuse) {
        abort(&client);
        return;
    }
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    let (switch, kill) = oneshot::channel();
    let state = Arc::new(ConnectionState::default());
    let connection = Connection {
        kill: switch,
        client: client_addr,
        state: Arc::clone(&state),
    };
    lock(&shared.connections).insert(id, connection);
    let task = ConnectionTask {
        shared: Arc::clone(shared),
        id,
        kill,
        state,
        limit: match mode {
            Mode::CutAfter(bytes) => Some(bytes),
            _ => None,
        },
        black_hole: mode == Mode::BlackHole,
    };
    tokio::spawn(task.serve(client));
}

/// Everything a connection task needs besides the client socket.
struct ConnectionTask {
    shared: Arc<Shared>,
    id: u64,
    kill: oneshot::Receiver<Kill>,
    state: Arc<ConnectionState>,
    /// Server→client byte limit ([`Mode::CutAfter`]).
    limit: Option<usize>,
    /// Accepted in [`Mode::BlackHole`]: never connect upstream.
    black_hole: bool,
}

impl ConnectionTask {
    /// Serves one connection until it ends, is reset, or the proxy drops.
    async fn serve(self, client: TcpStream) {
        let _registration = Registration {
            shared: Arc::clone(&self.shared),
            id: self.id,
        };
        if self.black_hole {
            swallow(client, self.kill).await;
            return;
        }
        let mut kill = self.kill;
        let upstream = tokio::select! {
            biased;
            _ = &mut kill => None,
            upstream = TcpStream::connect(self.shared.upstream) => upstream.ok(),
        };
        let Some(upstream) = upstream else {
            // Upstream unreachable (or killed meanwhile): reset the client.
            abort(&client);
            return;
        };
        *lock(&self.state.upstream_local) = upstream.local_addr().ok();
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let gate = Gate {
            shared: &self.shared,
            state: &self.state,
        };
        forward(gate, client, upstream, kill, self.limit).await;
    }
}

/// Decides, chunk by chunk, what happens to one connection's traffic: the
/// proxy's mode, unless the connection has been silenced.
#[derive(Clone, Copy)]
struct Gate<'a> {
    shared: &'a Shared,
    state: &'a ConnectionState,
}

impl Gate<'_> {
    /// The mode that applies to the next chunk.
    fn mode(self) -> Mode {
        if self.silenced() {
            Mode::BlackHole
        } else {
            self.shared.mode()
        }
    }

    /// Whether the connection has been silenced.
    fn silenced(self) -> bool {
        self.state.silenced.load(Ordering::SeqCst)
    }

    /// Notes that the `from` side closed behind the silent drop; returns
    /// whether the other side had closed already.
    fn note_closed(self, from: Side) -> bool {
        let (mine, other) = match from {
            Side::Client => (&self.state.client_closed, &self.state.server_closed),
            Side::Server => (&self.state.server_closed, &self.state.client_closed),
        };
        mine.store(true, Ordering::SeqCst);
        other.load(Ordering::SeqCst)
    }
}

/// The end of a proxied connection bytes are read from.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// Removes a connection's kill switch when its task ends.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shared.connections).remove(&self.id);
    }
}

/// Reads and drops everything the client sends until EOF or a kill.
async fn swallow(mut client: TcpStream, kill: oneshot::Receiver<Kill>) {
    let mut buf = vec![0; CHUNK];
    let drain = async { while matches!(client.read(&mut buf).await, Ok(n) if n > 0) {} };
    let killed = tokio::select! {
        biased;
        killed = kill => killed.is_ok(),
        () = drain => false,
    };
    if killed {
        abort(&client);
    }
}

/// Pumps bytes both ways; resets both sides on kill, limit or I/O error.
async fn forward(
    gate: Gate<'_>,
    mut client: TcpStream,
    mut upstream: TcpStream,
    kill: oneshot::Receiver<Kill>,
    limit: Option<usize>,
) {
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let pumps = async {
        tokio::try_join!(
            pump(
                gate,
                Side::Client,
                &mut client_read,
                &mut upstream_write,
                None
            ),
            pump(
                gate,
                Side::Server,
                &mut upstream_read,
                &mut client_write,
                limit
            ),
        )
    };
    // Keep the ack (if any) until the sockets are gone.
    let (ending, _ack) = tokio::select! {
        biased;
        killed = kill => (Ending::Abort, killed.ok()),
        result = pumps => (if result.is_ok() { Ending::Closed } else { Ending::Abort }, None),
    };
    if matches!(ending, Ending::Abort) {
        abort(&client);
        abort(&upstream);
    }
    drop(client);
    drop(upstream);
}

/// Copies `from` to `to` chunk by chunk, applying the gate's mode to each
/// chunk. On EOF, shuts down `to`'s write side and returns `Ok`. Returns
/// `Err` on an I/O error or once `limit` bytes have been forwarded.
///
/// On a silenced connection an EOF or error is not passed on: the pump
/// waits for ever, until the other side has closed as well (then `Err`, so
/// the connection ends; both peers are gone, so the resets reach no one).
async fn pump<R, W>(
    gate: Gate<'_>,
    side: Side,
    from: &mut R,
    to: &mut W,
    limit: Option<usize>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0; CHUNK];
    let mut remaining = limit.unwrap_or(usize::MAX);
    loop {
        let read = from.read(&mut buf).await;
        if gate.silenced() && !matches!(read, Ok(n) if n > 0) {
            if gate.note_closed(side) {
                return Err(io::Error::other("both sides closed behind a silent drop"));
            }
            return std::future::pending().await;
        }
        let n = read?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        match gate.mode() {
            Mode::BlackHole => continue,
            Mode::Latency(delay) => tokio::time::sleep(delay).await,
            _ => {}
        }
        let n = n.min(remaining);
        to.write_all(&buf[..n]).await?;
        remaining -= n;
        if remaining == 0 {
            return Err(io::Error::other("byte limit reached"));
        }
    }
}

/// Makes closing `stream` send RST instead of FIN (`SO_LINGER` of zero).
fn abort(stream: &TcpStream) {
    // A zero linger never blocks on close, which is why tokio deprecated only
    // the general setter; `set_zero_linger` needs tokio 1.50.
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
}

//! A private `redis-server` for a test: its own process on a free loopback port, with no
//! persistence (`--save "" --appendonly no`), killed when the value is dropped.
//!
//! `redis-server` must be installed — `scripts/test.sh` does it (apt), or by hand:
//! `apt-get install redis-server`. A missing server is a test failure, never a skip.
//!
//! [`RedisServer::stop`] shuts it down (`SHUTDOWN NOSAVE`: every session is lost, as after
//! a crash) and [`RedisServer::restart`] starts it again on the same port, for outage
//! tests; [`RedisServer::pause`] makes it hang for a while (`CLIENT PAUSE`) for timeout tests.

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    /// Opened before any pause: a new connection's handshake would wait out the pause.
    admin: Mutex<Option<redis::Connection>>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// Starts a server on a free port; panics (with the way to install it) when
    /// `redis-server` is missing.
    pub fn start() -> Self {
        let mut last_error = String::new();
        // A port found free may be taken before the server binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                child: None,
                output: Arc::default(),
                admin: Mutex::default(),
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, for checks and administration.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to the test redis-server")
    }

    /// Runs one command on the admin connection and returns its answer.
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let mut admin = self.admin.lock().unwrap();
        let conn = admin.get_or_insert_with(|| self.connection());
        let answer = cmd.query(conn);
        if answer.is_err() {
            *admin = None;
        }
        answer.unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Shuts the server down without saving: it stops answering, and its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let admin = self.admin.get_mut().unwrap().take();
            let _ = redis::cmd("SHUTDOWN")
                .arg("NOSAVE")
                .exec(&mut admin.unwrap_or_else(|| self.connection()));
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => panic!("redis-server did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Makes the server hang: every client's commands wait for `duration` (`CLIENT PAUSE
    /// .. ALL`), while connections stay open. Keep it short: it cannot be ended early
    /// (Redis 7.0 holds `CLIENT UNPAUSE` too).
    pub fn pause(&self, duration: Duration) {
        let ms = duration.as_millis().to_string();
        let () = self.cmd(&["CLIENT", "PAUSE", &ms, "ALL"]);
    }

    /// Waits until a [`pause`](Self::pause) is over (blocks the thread).
    pub fn wait_unpaused(&self) {
        let pong: String = self.cmd(&["PING"]);
        assert_eq!(pong, "PONG");
    }

    /// What the server printed, for failure messages.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(["--logfile", ""])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "redis-server is not installed (not on PATH): run `bash scripts/test.sh`, \
                         which installs it, or `apt-get install redis-server`"
                    )
                }
                format!("could not run redis-server: {e}")
            })?;
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&self.output);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                return Err(format!(
                    "redis-server exited ({status}) on port {}:\n{}",
                    self.port,
                    self.output()
                ));
            }
            let ping = redis::Client::open(self.url()).ok().and_then(|c| {
                let mut conn = c
                    .get_connection_with_timeout(Duration::from_millis(500))
                    .ok()?;
                redis::cmd("PING").query::<String>(&mut conn).ok()
            });
            if ping.as_deref() == Some("PONG") {
                self.child = Some(child);
                *self.admin.get_mut().unwrap() = Some(self.connection());
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "redis-server on port {} did not answer PING within {STARTUP_TIMEOUT:?}:\n{}",
                    self.port,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

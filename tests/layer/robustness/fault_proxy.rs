//! A loopback HTTP server that stands between the layer and the embedded provider and
//! misbehaves on demand: refuses connections, hangs, answers 5xx, garbage, an endless or a
//! dripping body; or passes requests on to the provider.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use tokio::sync::watch;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What the proxy does with the next requests.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Pass requests on to the upstream.
    None,
    /// Sleep, then pass on.
    Hang(Duration),
    /// Answer with this status and a plain-text body.
    Status(u16),
    /// Answer 200 with this content type and body.
    Body(&'static str, Vec<u8>),
    /// Answer 200 with a JSON-looking body that never ends and has no length.
    Endless,
    /// Answer 200 with a body that sends one byte every 100 ms, forever.
    Drip,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    upstream: Mutex<String>,
    fault: Arc<Mutex<Fault>>,
    down: watch::Sender<bool>,
    http: reqwest::Client,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`), passing requests on.
    pub async fn start(upstream: &str) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (down, _) = watch::channel(false);
        let proxy = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            upstream: Mutex::new(upstream.trim_end_matches('/').to_string()),
            fault: Arc::new(Mutex::new(Fault::None)),
            down,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        });
        Arc::clone(&proxy).serve(listener);
        proxy
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_upstream(&self, upstream: &str) {
        *self.upstream.lock().unwrap() = upstream.trim_end_matches('/').to_string();
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Stops listening and drops every open connection: connections are refused.
    pub fn go_down(&self) {
        self.down.send_replace(true);
    }

    /// Listens again on the same port.
    pub async fn come_up(self: &Arc<Self>) {
        self.down.send_replace(false);
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        Arc::clone(self).serve(listener);
    }

    fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let mut down = self.down.subscribe();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = down.wait_for(|d| *d) => return,
                };
                let Ok((stream, _)) = accepted else { continue };
                let proxy = Arc::clone(&self);
                let mut conn_down = self.down.subscribe();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let proxy = Arc::clone(&proxy);
                        async move { Ok::<_, Infallible>(proxy.answer(req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let conn =
                        hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_down.wait_for(|d| *d) => {}
                    }
                });
            }
        });
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let fault = self.fault.lock().unwrap().clone();
        match fault {
            Fault::None => self.pass(req).await,
            Fault::Hang(d) => {
                tokio::time::sleep(d).await;
                self.pass(req).await
            }
            Fault::Status(code) => {
                let mut res = full(Bytes::from_static(b"upstream trouble"));
                *res.status_mut() = StatusCode::from_u16(code).unwrap();
                res
            }
            Fault::Body(content_type, body) => {
                let mut res = full(Bytes::from(body));
                res.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
                res
            }
            Fault::Endless => {
                let start = stream::once(async {
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{\"access_token\":\"")))
                });
                let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
                let rest = stream::repeat_with(move || Ok(Frame::data(chunk.clone())));
                json_stream(StreamBody::new(futures_util::StreamExt::chain(start, rest)).boxed())
            }
            Fault::Drip => {
                let drip = stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b" "))),
                        (),
                    ))
                });
                json_stream(StreamBody::new(drip).boxed())
            }
        }
    }

    async fn pass(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut out = self.http.request(parts.method.clone(), {
            let upstream = self.upstream.lock().unwrap().clone();
            format!("{upstream}{path}")
        });
        for (name, value) in &parts.headers {
            if name != header::HOST && name != header::CONTENT_LENGTH {
                out = out.header(name, value);
            }
        }
        let Ok(upstream) = out.body(body).send().await else {
            let mut res = full(Bytes::from_static(b"upstream unreachable"));
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            return res;
        };
        let status = upstream.status();
        let headers = upstream.headers().clone();
        let body = upstream.bytes().await.unwrap_or_default();
        let mut res = full(body);
        *res.status_mut() = status;
        for name in [
            header::CONTENT_TYPE,
            header::WWW_AUTHENTICATE,
            header::CACHE_CONTROL,
        ] {
            if let Some(v) = headers.get(&name) {
                res.headers_mut().insert(name, v.clone());
            }
        }
        res
    }
}

fn full(body: Bytes) -> Response<Body> {
    Response::new(Full::new(body).boxed())
}

fn json_stream(body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    res.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    res
}

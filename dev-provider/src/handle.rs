//! The handle to a running provider: its addresses, knobs and recordings.

use super::*;

/// A handle to a running development authorization server.
///
/// Cloning is cheap and shares the server. The server stops when the last handle is dropped
/// or [`DevProvider::shutdown`] is called.
#[derive(Clone)]
pub struct DevProvider {
    pub(super) inner: Arc<Handle>,
}

pub(super) struct Handle {
    pub(super) shared: Arc<Shared>,
    pub(super) local_addr: SocketAddr,
    pub(super) base_url: String,
    pub(super) shutdown: watch::Sender<bool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

impl fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProvider")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl DevProvider {
    /// Starts configuring a provider.
    pub fn builder() -> DevProviderBuilder {
        DevProviderBuilder::default()
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash). It is also the issuer.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The issuer identifier (RFC 9207 / RFC 8414): the same as [`DevProvider::base_url`].
    pub fn issuer(&self) -> &str {
        &self.inner.shared.issuer
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// `{base}/authorize`.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.base_url())
    }

    /// `{base}/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// `{base}/userinfo`. The same resource is also served at `{base}/user` (GitHub style).
    pub fn userinfo_endpoint(&self) -> String {
        format!("{}/userinfo", self.base_url())
    }

    /// Changes how `POST /token` answers from now on.
    pub fn set_token_behavior(&self, behavior: TokenBehavior) {
        self.state().token_behavior = behavior;
    }

    /// Changes how valid authorization requests are answered from now on.
    pub fn set_authorize_behavior(&self, behavior: AuthorizeBehavior) {
        self.state().authorize_behavior = behavior;
    }

    /// Changes how the userinfo endpoint answers from now on.
    pub fn set_userinfo_behavior(&self, behavior: UserinfoBehavior) {
        self.state().userinfo_behavior = behavior;
    }

    /// `Some(user)`: a valid `GET /authorize` skips the form and signs in as `user` at once.
    /// `None`: show the login form.
    pub fn set_auto_login(&self, user: Option<String>) {
        self.state().auto_login = user;
    }

    /// The number of `GET /authorize` requests received (valid or not).
    pub fn authorize_requests(&self) -> usize {
        self.state().authorize_requests
    }

    /// The number of `POST /token` requests received (any outcome).
    pub fn token_requests(&self) -> usize {
        self.state().token_requests
    }

    /// The number of userinfo requests received (any outcome).
    pub fn userinfo_requests(&self) -> usize {
        self.state().userinfo_requests
    }

    /// The number of successful authorization code exchanges.
    pub fn codes_redeemed(&self) -> usize {
        self.state().codes_redeemed
    }

    /// The decoded query parameters of the last `GET /authorize`, in order.
    pub fn last_authorize_params(&self) -> Option<Vec<(String, String)>> {
        self.state().last_authorize_params.clone()
    }

    /// The decoded form parameters of the last `POST /token`, in order.
    ///
    /// For tests only: this includes any `client_secret`, `code`, `code_verifier` and
    /// `refresh_token` the client sent.
    pub fn last_token_params(&self) -> Option<Vec<(String, String)>> {
        self.state().last_token_params.clone()
    }

    /// The raw `Authorization` header of the last `POST /token`, if it had one.
    ///
    /// For tests only: it contains the client's credentials.
    pub fn last_token_authorization_header(&self) -> Option<String> {
        self.state().last_token_authorization_header.clone()
    }

    /// Every access token ever issued, in issue order (including expired and revoked ones).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.state().issued_access_tokens.clone()
    }

    /// Every refresh token ever issued, in issue order (including rotated and revoked ones).
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.state().issued_refresh_tokens.clone()
    }

    /// How many times a refresh token was presented again after it had been rotated away
    /// (a client that lost the rotated token, or a thief); see
    /// [`DevProviderBuilder::with_refresh_token_reuse_detection`].
    pub fn refresh_token_reuses(&self) -> usize {
        self.state().refresh_token_reuses
    }

    /// Invalidates every access token issued so far (refresh tokens stay valid), so that the
    /// next userinfo call fails with `invalid_token`.
    pub fn revoke_access_tokens(&self) {
        self.state().access_tokens.clear();
    }

    /// Invalidates every access and refresh token issued so far.
    pub fn revoke_all_tokens(&self) {
        let mut state = self.state();
        state.access_tokens.clear();
        state.refresh_tokens.clear();
    }

    /// `{base}/jwks`: the JSON Web Key Set with the public signing keys.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.base_url())
    }

    /// `{base}/revoke`: the RFC 7009 revocation endpoint.
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/revoke", self.base_url())
    }

    /// `{base}/end_session`: the OpenID Connect RP-Initiated Logout endpoint (`GET` with a
    /// query, or `POST` with a form).
    ///
    /// An `id_token_hint` must be an ID token this provider signed (RS256 with one of its
    /// rotation keys, published now or not) with its issuer; expired ones are accepted. A
    /// `client_id` must be registered and, with a hint, among the hint's audiences. A valid
    /// request ends the provider login session named by the hint's `sid` (or, without `sid`,
    /// every session of its `sub`); the provider sets no login cookie, so without a hint no
    /// session is ended. With a `post_logout_redirect_uri` registered for the client (named by
    /// `client_id`, or else by the hint's `azp` or first audience) the answer is `303` there,
    /// with `state` when given; otherwise it is a "You are signed out" page (which says so when
    /// a `post_logout_redirect_uri` was refused). An invalid hint or client gets a `400` page
    /// and ends nothing.
    pub fn end_session_endpoint(&self) -> String {
        format!("{}/end_session", self.base_url())
    }

    /// `{base}/.well-known/openid-configuration`: the OpenID Connect Discovery document.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base_url())
    }

    /// Changes the ID tokens issued by the `authorization_code` grant from now on (see
    /// [`IdTokenBehavior`]; some variants also change what `/jwks` serves).
    pub fn set_id_token_behavior(&self, behavior: IdTokenBehavior) {
        self.state().id_token_behavior = behavior;
    }

    /// Changes the ID tokens issued by the `refresh_token` grant from now on.
    pub fn set_refresh_id_token_behavior(&self, behavior: RefreshIdTokenBehavior) {
        self.state().refresh_id_token_behavior = behavior;
    }

    /// `Some(issuer)`: both discovery documents announce `issuer` instead of the real issuer
    /// (the "discovery issuer mismatch" case). Tokens and the `iss` authorization response
    /// parameter keep the real issuer. `None` restores the real issuer.
    pub fn set_discovery_issuer(&self, issuer: Option<String>) {
        self.state().discovery_issuer = issuer;
    }

    /// Makes the next embedded RSA key the signing key (after the third comes the first
    /// again). With `keep_old_in_jwks`, `/jwks` keeps publishing the keys it published and
    /// adds the new one; without, it publishes the new key only, so tokens signed before the
    /// rotation no longer verify against a freshly fetched JWKS.
    pub fn rotate_signing_key(&self, keep_old_in_jwks: bool) {
        let mut state = self.state();
        let next = (state.active_key + 1) % keys::ROTATION_KEY_COUNT;
        state.active_key = next;
        if !keep_old_in_jwks {
            state.published_keys.clear();
        }
        if !state.published_keys.contains(&next) {
            state.published_keys.push(next);
        }
    }

    /// The `kid` of the key that signs ID tokens and logout tokens now.
    pub fn signing_key_id(&self) -> String {
        keys::rotation_kid(self.state().active_key).to_owned()
    }

    /// The `kid`s `/jwks` serves now, in order (as with [`IdTokenBehavior::Normal`]; some
    /// ID token behaviours change the set, see [`IdTokenBehavior::NoKidSingleKey`]).
    pub fn published_key_ids(&self) -> Vec<String> {
        let state = self.state();
        oidc::jwks_key_indexes(&state)
            .into_iter()
            .map(|index| keys::rotation_kid(index).to_owned())
            .collect()
    }

    /// `false`: `/jwks` answers `503 Service Unavailable` (for fault tests). `true` (the
    /// default): it serves the keys.
    pub fn set_jwks_available(&self, available: bool) {
        self.state().jwks_unavailable = !available;
    }

    /// The number of `GET /jwks` requests received (any outcome).
    pub fn jwks_requests(&self) -> usize {
        self.state().jwks_requests
    }

    /// The number of `POST /token` requests with `grant_type=authorization_code` received (any
    /// outcome, whatever the [`TokenBehavior`]).
    pub fn authorization_code_requests(&self) -> usize {
        self.state().authorization_code_requests
    }

    /// The number of `POST /token` requests with `grant_type=refresh_token` received (any
    /// outcome, whatever the [`TokenBehavior`]).
    pub fn refresh_requests(&self) -> usize {
        self.state().refresh_requests
    }

    /// The number of `POST /revoke` requests received (any outcome).
    pub fn revocation_requests(&self) -> usize {
        self.state().revocation_requests
    }

    /// The `token` values of the revocation requests whose client authentication succeeded,
    /// in order, whether the token was known (and so revoked) or not.
    ///
    /// For tests only: these are live or former tokens.
    pub fn revoked_tokens(&self) -> Vec<String> {
        self.state().revoked_tokens.clone()
    }

    /// The number of `/end_session` requests received (any outcome).
    pub fn end_session_requests(&self) -> usize {
        self.state().end_session_requests
    }

    /// The decoded parameters (query for `GET`, form for `POST`) of the last `/end_session`
    /// request, in order.
    ///
    /// For tests only: this includes any `id_token_hint`.
    pub fn last_end_session_params(&self) -> Option<Vec<(String, String)>> {
        self.state().last_end_session_params.clone()
    }

    /// The provider session ids (`sid` claims) issued to `subject`, one per sign-in, oldest
    /// first, whether or not they were ended since.
    pub fn sessions_of(&self, subject: &str) -> Vec<String> {
        self.state()
            .sessions
            .iter()
            .filter(|session| session.username == subject)
            .map(|session| session.sid.clone())
            .collect()
    }

    /// Whether the provider session `sid` exists and was not ended by RP-initiated or
    /// back-channel logout.
    pub fn is_session_active(&self, sid: &str) -> bool {
        self.state()
            .sessions
            .iter()
            .any(|session| session.sid == sid && session.active)
    }

    /// Stops the server (gracefully: requests in flight are finished). The accessors keep
    /// working afterwards. Dropping the last handle has the same effect.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(super) fn state(&self) -> MutexGuard<'_, ServerState> {
        self.inner.shared.lock()
    }
}

// ---------------------------------------------------------------------------------------------

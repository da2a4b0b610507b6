//! Which part of the layer answers a request: one of its own paths, or the app.

use http::Method;

use crate::context::Context;

/// Which part of the layer answers a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Route {
    Callback,
    Login,
    Logout,
    /// `GET` on the logout path: the confirmation page, unless the app shows its own.
    LogoutPage,
    LogoutCallback,
    BackchannelLogout,
    /// Everything else: the app's own routes.
    App,
}

pub(crate) fn route(inner: &Context, method: &Method, path: &str) -> Route {
    if path == inner.callback_path {
        Route::Callback
    } else if path == inner.login_path {
        Route::Login
    } else if path == inner.logout_path && method == Method::POST {
        Route::Logout
    } else if path == inner.logout_path && method == Method::GET && inner.logout_page {
        Route::LogoutPage
    } else if path == inner.logout_callback_path && method == Method::GET {
        Route::LogoutCallback
    } else if inner.provider.oidc.is_some()
        && inner.backchannel_logout_path.as_deref() == Some(path)
    {
        Route::BackchannelLogout
    } else {
        Route::App
    }
}

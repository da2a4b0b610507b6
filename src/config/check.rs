//! Checks shared by the setting groups: endpoint URLs, the layer's paths, and the list of
//! required settings that are missing.

use url::Url;

use crate::error::ConfigError;
use crate::flow::return_to::safe_return_to;

/// The required settings that are missing, gathered over all groups before anything is
/// built, so that [`ConfigError::Missing`] names all of them at once.
#[derive(Default)]
pub(super) struct Missing(Vec<&'static str>);

impl Missing {
    /// Notes `setting` as missing unless it is `present`.
    pub(super) fn require(&mut self, present: bool, setting: &'static str) {
        if !present && !self.0.contains(&setting) {
            self.0.push(setting);
        }
    }

    /// `Ok` when nothing is missing.
    pub(super) fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Missing { settings: self.0 })
        }
    }
}

/// `value`, or the error that it is missing. [`Missing`] has reported every absent
/// required setting before the groups are built; this keeps the builders free of
/// `unwrap` all the same.
pub(super) fn required<T>(value: Option<T>, setting: &'static str) -> Result<T, ConfigError> {
    value.ok_or_else(|| ConfigError::Missing {
        settings: vec![setting],
    })
}

/// Parses an endpoint URL: absolute, http(s), and https unless it is on loopback (so
/// development works without certificates but production cannot leak over plain http).
pub(super) fn endpoint(value: &str, field: &'static str) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|source| ConfigError::UnparsableUrl { field, source })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ConfigError::InvalidUrl {
                field,
                reason: "must be https (plain http is allowed on loopback only)".into(),
            })
        }
        other => {
            return Err(ConfigError::InvalidUrl {
                field,
                reason: format!("unsupported scheme {other}"),
            })
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::InvalidUrl {
            field,
            reason: "must not carry credentials".into(),
        });
    }
    Ok(url)
}

/// [`endpoint`] for a setting that may be absent.
pub(super) fn optional_endpoint(
    value: Option<&str>,
    field: &'static str,
) -> Result<Option<Url>, ConfigError> {
    value.map(|v| endpoint(v, field)).transpose()
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// One of the layer's own paths: absolute, and in the form a browser sends it.
pub(super) fn check_path(field: &'static str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.starts_with("//") || path.contains(['?', '#', '\\']) {
        return Err(ConfigError::InvalidPath {
            field,
            reason: "must be an absolute path like /auth/logout".into(),
        });
    }
    // The layer compares these with request paths, which browsers send resolved; and the
    // login path goes into links and the 401 body, where `/.//x` would read as `//x`.
    if safe_return_to(path).as_deref() != Some(path) {
        return Err(ConfigError::InvalidPath {
            field,
            reason: "must be in the form a browser sends it: no . or .. segments (plain or \
                     encoded), nothing that resolves to //, no whitespace, non-ASCII \
                     percent-encoded"
                .into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_settings_are_reported_together_once_each() {
        let mut missing = Missing::default();
        missing.require(true, "client id");
        missing.require(false, "token endpoint");
        missing.require(false, "redirect URL");
        missing.require(false, "token endpoint");
        match missing.into_result() {
            Err(ConfigError::Missing { settings }) => {
                assert_eq!(settings, ["token endpoint", "redirect URL"]);
            }
            other => panic!("expected Missing, got {other:?}"),
        }
        assert!(Missing::default().into_result().is_ok());
    }

    #[test]
    fn endpoints_must_be_https_off_loopback_and_carry_no_credentials() {
        assert!(endpoint("https://idp.example/token", "t").is_ok());
        assert!(endpoint("http://127.0.0.1:8080/token", "t").is_ok());
        assert!(endpoint("http://localhost/token", "t").is_ok());
        assert!(endpoint("http://[::1]/token", "t").is_ok());
        for bad in [
            "http://idp.example/token",
            "ftp://idp.example/token",
            "https://user:pw@idp.example/token",
            "/token",
        ] {
            assert!(endpoint(bad, "t").is_err(), "{bad}");
        }
    }
}

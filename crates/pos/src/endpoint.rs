//! Where requests go: the cloud's root URL, normalised from whatever base the POS was given.

use crate::error::PosError;
use url::Url;

/// The API's URLs, derived once from the configured base.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// The root without the `/POS` environment suffix, e.g. `https://host/` or `https://host/x`.
    root: Url,
    /// `{root}/POS/Transaction`, built once because every transaction uses it.
    transaction: Url,
}

impl Endpoints {
    /// Accepts a plain cloud base (`http://127.0.0.1:8080`) or a SmartConnect-style environment
    /// (`https://host/POS`, any case, trailing slash or not). A path prefix before `/POS` is
    /// kept so that a cloud behind a reverse proxy at `https://host/eft` works.
    pub(crate) fn parse(base: &str) -> Result<Self, PosError> {
        let base = base.trim();
        let mut url =
            Url::parse(base).map_err(|e| PosError::InvalidUrl(format!("'{base}': {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PosError::InvalidUrl(format!(
                "'{base}': the scheme must be http or https"
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(PosError::InvalidUrl(format!(
                "'{base}': a base URL has no query or fragment"
            )));
        }
        let mut segments: Vec<String> = url
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        if segments
            .last()
            .is_some_and(|s| s.eq_ignore_ascii_case("pos"))
        {
            segments.pop();
        }
        url.set_path(&segments.join("/"));
        let root = url;
        let transaction = join(&root, &["POS", "Transaction"])?;
        Ok(Self { root, transaction })
    }

    /// `{root}/POS/Pairing/{code}`; the code is percent-encoded as one path segment.
    pub(crate) fn pairing(&self, code: &str) -> Result<Url, PosError> {
        join(&self.root, &["POS", "Pairing", code])
    }

    /// `{root}/POS/Transaction`.
    pub(crate) fn transaction(&self) -> &Url {
        &self.transaction
    }

    /// `{root}/<parts...>`, each part one percent-encoded path segment (eftcloud's routes).
    pub(crate) fn path(&self, parts: &[&str]) -> Result<Url, PosError> {
        join(&self.root, parts)
    }
}

fn join(root: &Url, parts: &[&str]) -> Result<Url, PosError> {
    let mut url = root.clone();
    url.path_segments_mut()
        .map_err(|()| PosError::InvalidUrl(format!("'{root}' cannot have a path")))?
        .pop_if_empty()
        .extend(parts);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transaction(base: &str) -> String {
        Endpoints::parse(base)
            .map(|e| e.transaction().to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn plain_base_and_environment_give_the_same_urls() {
        for base in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/POS",
            "http://127.0.0.1:8080/POS/",
            "http://127.0.0.1:8080/pos",
            " http://127.0.0.1:8080/Pos// ",
        ] {
            assert_eq!(
                transaction(base),
                "http://127.0.0.1:8080/POS/Transaction",
                "{base}"
            );
        }
        assert_eq!(
            transaction("https://api-dev.smart-connect.cloud/POS"),
            "https://api-dev.smart-connect.cloud/POS/Transaction"
        );
    }

    #[test]
    fn a_path_prefix_is_kept() {
        assert_eq!(
            transaction("https://host/eft/POS"),
            "https://host/eft/POS/Transaction"
        );
        assert_eq!(
            transaction("https://host/eft/"),
            "https://host/eft/POS/Transaction"
        );
    }

    #[test]
    fn pairing_url_encodes_the_code_as_one_segment() {
        let e = Endpoints::parse("https://host/POS").map_err(|e| e.to_string());
        let url = e.and_then(|e| e.pairing("12345678").map_err(|e| e.to_string()));
        assert_eq!(
            url.map(|u| u.to_string()),
            Ok("https://host/POS/Pairing/12345678".to_string())
        );
        let e = Endpoints::parse("http://h").map_err(|e| e.to_string());
        let url = e.and_then(|e| e.pairing("1/2 3").map_err(|e| e.to_string()));
        assert_eq!(
            url.map(|u| u.to_string()),
            Ok("http://h/POS/Pairing/1%2F2%203".to_string())
        );
    }

    #[test]
    fn unusable_bases_are_refused() {
        for base in [
            "",
            "127.0.0.1:8080",
            "localhost:8080",
            "ftp://host/POS",
            "http://host/POS?x=1",
            "http://host/#top",
        ] {
            assert!(
                matches!(Endpoints::parse(base), Err(PosError::InvalidUrl(_))),
                "{base}"
            );
        }
    }
}

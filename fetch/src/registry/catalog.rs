//! Listing what a registry holds: its repositories (`/v2/_catalog`) and each repository's tags
//! (`/v2/NAME/tags/list`), page by page as the `Link` header says.

use std::io::Read;

use serde::Deserialize;
use ureq::http::Method;

use super::auth::Scope;
use super::request::Request;
use super::{Registry, header};
use crate::error::FetchError;

/// Entries asked for per page.
const PAGE: usize = 1000;
/// A listing larger than this is refused (a loop, or a hostile registry).
const LIST_LIMIT: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct Tags {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Registry {
    /// Every repository of the registry.
    pub fn repositories(&self) -> Result<Vec<String>, FetchError> {
        let mut out = Vec::new();
        let mut next = Some(format!("/v2/_catalog?n={PAGE}"));
        while let Some(path) = next.take() {
            let (body, link) =
                self.page("repository list (/v2/_catalog)", &path, Scope::catalog())?;
            let page: Catalog = parse(&body, "the repository list", self.host())?;
            next = link.filter(|_| !page.repositories.is_empty());
            out.extend(page.repositories);
        }
        Ok(out)
    }

    /// Every tag of `repo`.
    pub fn tags(&self, repo: &str) -> Result<Vec<String>, FetchError> {
        let mut out = Vec::new();
        let mut next = Some(format!("/v2/{repo}/tags/list?n={PAGE}"));
        while let Some(path) = next.take() {
            let what = format!("tags of {repo}");
            let (body, link) = self.page(&what, &path, Scope::pull(repo))?;
            let page: Tags = parse(&body, &what, self.host())?;
            let tags = page.tags.unwrap_or_default();
            next = link.filter(|_| !tags.is_empty());
            out.extend(tags);
        }
        Ok(out)
    }

    /// One page of a listing, and the path of the next one.
    fn page(
        &self,
        what: &str,
        path: &str,
        scope: Scope,
    ) -> Result<(Vec<u8>, Option<String>), FetchError> {
        let resp = self.call(&Request::new(Method::GET, what, path, vec![scope]))?;
        let link = header(&resp, "link").and_then(|l| next_link(&l));
        let mut body = Vec::new();
        resp.into_body()
            .into_reader()
            .take(LIST_LIMIT)
            .read_to_end(&mut body)
            .map_err(|e| FetchError::Transfer {
                what: what.to_string(),
                host: self.host.clone(),
                attempts: 1,
                source: Box::new(e),
            })?;
        Ok((body, link))
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str, host: &str) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|e| FetchError::Invalid {
        what: format!("{what} from {host}"),
        source: Box::new(e),
    })
}

/// The target of `Link: </v2/_catalog?last=x&n=1000>; rel="next"`.
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            next_link(r#"</v2/_catalog?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }
}

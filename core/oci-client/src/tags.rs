//! Listing a repository's tags, page by page through `Link: <…>; rel="next"`.

use std::collections::HashSet;

use serde::Deserialize;
use ureq::http::Method;
use url::Url;

use crate::auth::Scopes;
use crate::client::Client;
use crate::error::{OciError, Result, Subject};
use crate::exchange::{Body, Request};
use crate::names::{RepositoryName, Tag};
use crate::transport::Response;
use crate::url_policy::UrlPolicy;

/// Tags asked for per page by [`Client::tags`] (registries may send fewer).
const PAGE_SIZE: u32 = 1000;
/// A tag list page larger than this is refused.
const MAX_PAGE_BYTES: u64 = 4 * 1024 * 1024;
/// Pages followed before giving up on a registry that never ends its list.
const MAX_PAGES: usize = 10_000;

/// One page; `tags` may be `null` in some registries' answer for an empty repository.
#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Client {
    /// Every tag of `repository`, in the registry's order. Follows `Link` pagination on the
    /// registry's own origin only; refuses a tag that breaks the tag grammar, a page over
    /// 4 MiB, and a list that loops or never ends. An unknown repository is
    /// [`OciError::NotFound`].
    pub fn tags(&self, repository: &RepositoryName) -> Result<Vec<Tag>> {
        self.tags_in_pages(repository, PAGE_SIZE)
    }

    /// [`Client::tags`], asking for pages of `page_size` tags (at least 1).
    pub fn tags_in_pages(&self, repository: &RepositoryName, page_size: u32) -> Result<Vec<Tag>> {
        let subject = Subject::Tags {
            repository: repository.clone(),
        };
        let scopes = Scopes::pull(repository);
        let mut url = self.repository_url(repository, "tags/list")?;
        url.query_pairs_mut()
            .append_pair("n", &page_size.max(1).to_string());
        let mut visited: HashSet<String> = HashSet::new();
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            visited.insert(url.as_str().to_string());
            let response = self.exchange(Request {
                method: Method::GET,
                url: url.clone(),
                headers: Vec::new(),
                body: Body::Empty,
                scopes: Some(&scopes),
                subject: &subject,
                idempotent: true,
                follow_redirects: true,
            })?;
            if response.status().as_u16() != 200 {
                return Err(self
                    .transport
                    .status_error(&Method::GET, response, &subject));
            }
            let next = self.next_page(&response, &url, &subject)?;
            let body = self
                .transport
                .read_limited(response, MAX_PAGE_BYTES, &subject)?;
            let page: TagPage = serde_json::from_slice(&body)
                .map_err(|_| self.protocol(&subject, "a tag list that is not the expected JSON"))?;
            for tag in page.tags.unwrap_or_default() {
                let tag = Tag::new(&tag)
                    .map_err(|e| self.protocol(&subject, format!("a tag list holding an {e}")))?;
                tags.push(tag);
            }
            match next {
                None => return Ok(tags),
                Some(next) if visited.contains(next.as_str()) => {
                    return Err(self.protocol(&subject, "a tag list whose pages loop"));
                }
                Some(next) => url = next,
            }
        }
        Err(self.protocol(
            &subject,
            format!("a tag list of more than {MAX_PAGES} pages"),
        ))
    }

    /// The `rel="next"` link of a page, which must stay on the registry's origin.
    fn next_page(
        &self,
        response: &Response,
        current: &Url,
        subject: &Subject,
    ) -> Result<Option<Url>> {
        let Some(target) = response
            .headers()
            .get_all("link")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_link)
        else {
            return Ok(None);
        };
        let policy = UrlPolicy::new(self.base_url()?, self.options.insecure);
        let unsafe_url = |url: String, reason| OciError::UnsafeUrl {
            registry: self.transport.registry(),
            subject: subject.clone().into(),
            what: "the next page link",
            url,
            reason,
        };
        let next = policy
            .resolve(current, target)
            .map_err(|(shown, reason)| unsafe_url(shown, reason))?;
        if !policy.is_registry_origin(&next) {
            return Err(unsafe_url(
                crate::url_policy::redact(&next),
                "pages must stay on the registry",
            ));
        }
        Ok(Some(next))
    }
}

/// The target of the `rel="next"` entry of a `Link` header value (RFC 8288), if any.
fn next_link(header: &str) -> Option<&str> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let params_end = after[close..].find('<').map_or(after.len(), |i| close + i);
        let params = &after[close + 1..params_end];
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target);
        }
        rest = &after[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/a/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r.example/p1>; rel="prev", <https://r.example/p3>; rel=next"#),
            Some("https://r.example/p3")
        );
        assert_eq!(next_link(r#"<x>; rel="prev next""#), Some("x"));
        assert_eq!(next_link(r#"<x>; rel="prev""#), None);
        for junk in ["", "<", "<x", ">; rel=next", "<x>;;;", "<x>; rel", "<<<>>>"] {
            let _ = next_link(junk);
        }
    }
}

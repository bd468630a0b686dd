//! Who the caller is, and what they may see.

mod access;
mod login;
mod sessions;

use crate::support::Site;

const PASSWORD: &str = "correct horse battery";

/// A keyed site where dave has a password and erin none.
fn site_with_dave() -> Site {
    let site = Site::keyed(&[]);
    site.add_user_with_password("dave", PASSWORD);
    site.add_user("erin");
    site
}

//! The customer-facing screen: the cart the cloud's `display` frames set, and how a console
//! draws a cart (the display frames' and a payment's basket alike).
//!
//! Frames may arrive twice or, across cloud nodes, out of order: the screen keeps the frame
//! with the highest version it has seen and ignores the others.

use protocol::action::{Cart, Display};
use protocol::Currency;

/// What the customer's screen shows between payments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CustomerScreen {
    version: Option<u64>,
    cart: Option<Cart>,
}

impl CustomerScreen {
    /// Takes `frame` if its version is above the one shown; returns whether it did. A frame
    /// whose cart breaks the protocol's limits is refused too (the cloud checks them, so this
    /// is a cloud bug, and showing it could only go wrong).
    pub fn update(&mut self, frame: Display) -> bool {
        if self.version.is_some_and(|v| frame.version <= v) {
            return false;
        }
        if let Some(Err(e)) = frame.cart.as_ref().map(Cart::check) {
            tracing::warn!(version = frame.version, error = %e, "ignoring a display frame with a bad cart");
            return false;
        }
        self.version = Some(frame.version);
        self.cart = frame.cart;
        true
    }

    /// The version shown, if any frame arrived yet.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// The cart shown (`None`: the screen is clear).
    pub fn cart(&self) -> Option<&Cart> {
        self.cart.as_ref()
    }
}

/// Width of a cart drawn on the console.
pub const CONSOLE_WIDTH: usize = 40;

/// The cart as lines of at most `width` characters: each line's quantity, description and
/// amount (with its unit price below when there is more than one), then the total and the tax
/// with the currency's code. Amounts are placed by the currency's minor units (`cart.currency`,
/// else `currency`).
pub fn render_cart(cart: &Cart, currency: Currency, width: usize) -> String {
    let currency = cart.currency.unwrap_or(currency);
    let mut out = Vec::new();
    if cart.lines.is_empty() {
        out.push("(no items)".to_string());
    }
    for line in &cart.lines {
        out.push(pair(
            &format!("{} x {}", line.quantity, line.description),
            &currency.decimal(line.amount),
            width,
        ));
        if let Some(unit) = line.unit_price.filter(|_| line.quantity.trim() != "1") {
            out.push(format!("    @ {}", currency.decimal(unit)));
        }
    }
    out.push("-".repeat(width));
    out.push(pair("TOTAL", &currency.display(cart.total), width));
    if let Some(tax) = cart.tax {
        out.push(pair("incl. tax", &currency.display(tax), width));
    }
    out.join("\n")
}

/// `left` and `right` on one line of `width`, the left cut short to leave a space.
fn pair(left: &str, right: &str, width: usize) -> String {
    let room = width.saturating_sub(right.chars().count() + 1).max(1);
    let left: String = left.chars().take(room).collect();
    let gap = width
        .saturating_sub(left.chars().count() + right.chars().count())
        .max(1);
    format!("{left}{}{right}", " ".repeat(gap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::action::CartLine;

    fn cart(total: u64) -> Cart {
        Cart {
            lines: vec![
                CartLine {
                    description: "Flat white".into(),
                    quantity: "2".into(),
                    unit_price: Some(450),
                    amount: 900,
                },
                CartLine {
                    description: "Muffin".into(),
                    quantity: "1".into(),
                    unit_price: Some(250),
                    amount: 250,
                },
            ],
            currency: None,
            total,
            tax: Some(105),
        }
    }

    fn frame(version: u64, cart: Option<Cart>) -> Display {
        Display { version, cart }
    }

    #[test]
    fn keeps_the_highest_version() {
        let mut s = CustomerScreen::default();
        assert_eq!(s.version(), None);
        assert!(s.update(frame(3, Some(cart(1150)))));
        assert_eq!(s.cart().map(|c| c.total), Some(1150));
        // Repeated and stale frames change nothing.
        assert!(!s.update(frame(3, Some(cart(1)))));
        assert!(!s.update(frame(2, None)));
        assert_eq!(s.cart().map(|c| c.total), Some(1150));
        assert_eq!(s.version(), Some(3));
        // A newer frame may clear the screen.
        assert!(s.update(frame(4, None)));
        assert_eq!(s.cart(), None);
        // Version 0 is a version like any other when nothing was shown.
        let mut s = CustomerScreen::default();
        assert!(s.update(frame(0, None)));
        assert!(!s.update(frame(0, Some(cart(5)))));
    }

    #[test]
    fn a_cart_over_the_limits_is_ignored() {
        let mut s = CustomerScreen::default();
        let mut bad = cart(1);
        bad.lines[0].description = String::new();
        assert!(!s.update(frame(1, Some(bad))));
        assert_eq!(s.version(), None);
    }

    #[test]
    fn renders_lines_total_and_tax_in_minor_units() {
        let text = render_cart(&cart(1150), Currency::AUD, 32);
        assert_eq!(
            text,
            [
                "2 x Flat white              9.00",
                "    @ 4.50",
                "1 x Muffin                  2.50",
                "--------------------------------",
                "TOTAL                  AUD 11.50",
                "incl. tax               AUD 1.05",
            ]
            .join("\n")
        );
        let mut yen = cart(1150);
        yen.currency = Currency::parse("JPY").ok();
        let text = render_cart(&yen, Currency::AUD, 32);
        assert!(
            text.contains("JPY 1150") && text.contains("  900"),
            "{text}"
        );
        let kwd = render_cart(&cart(1150), Currency::parse("KWD").unwrap_or_default(), 32);
        assert!(kwd.contains("KWD 1.150"), "{kwd}");
        let mut long = cart(1);
        long.lines[0].description = "x".repeat(120);
        for line in render_cart(&long, Currency::AUD, 32).lines() {
            assert!(line.chars().count() <= 32, "{line:?}");
        }
        let empty = Cart {
            lines: vec![],
            currency: None,
            total: 0,
            tax: None,
        };
        assert!(render_cart(&empty, Currency::AUD, 32).starts_with("(no items)"));
    }
}

//! Terminal actions the engine carries out beyond the transaction lifecycle: the cart on a
//! device's customer-facing screen. (Input, printing and QR codes are jobs of the lifecycle,
//! started like any transaction; their rules are in [`crate::domain::actions`].)
//!
//! A display is not a job: it never waits for the device, never makes it busy and never
//! interrupts a payment. It is stored on the device's row before it is sent, with a version
//! that moves only when the cart changes, so that a retried request changes nothing, a frame
//! that arrives late (or twice, across nodes) is recognised by the device as old, and a device
//! that reconnects is shown what it missed.

use super::{Engine, EngineError};
use crate::domain::accounts::MerchantId;
use protocol::action::{Cart, Display};
use protocol::device::{capability, CloudMessage};
use protocol::{DeviceId, RegisterKey};

/// What a display request did.
#[derive(Debug, Clone)]
pub struct Displayed {
    pub device: DeviceId,
    /// The version the device shows now (the same as before when nothing changed).
    pub version: u64,
    /// The cart shown, none when cleared.
    pub cart: Option<Cart>,
    /// Whether the frame reached a connection of the device now (else it is shown when the
    /// device reconnects).
    pub delivered: bool,
}

/// Why a display could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("{}", protocol::pos_api::NOT_PAIRED)]
    NotPaired,
    /// The device has no customer-facing screen it declared; nothing was stored or sent.
    #[error("device {0} cannot show a cart: it does not declare the capability 'display' (update its agent)")]
    Unsupported(DeviceId),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for DisplayError {
    fn from(e: crate::store::StoreError) -> Self {
        DisplayError::Engine(e.into())
    }
}

impl Engine {
    /// Shows `cart` (or clears the screen, with none) on the device paired with `register`.
    /// With `merchant` (a merchant's key), a register of another merchant is not paired for
    /// it. A cart without a currency is in the merchant's.
    pub async fn show_display(
        &self,
        register: &RegisterKey,
        cart: Option<Cart>,
        merchant: Option<&MerchantId>,
    ) -> Result<Displayed, DisplayError> {
        let route = self
            .store()
            .route(register)
            .await?
            .filter(|r| merchant.is_none_or(|m| *m == r.device.merchant_id))
            .ok_or(DisplayError::NotPaired)?;
        let device = route.device;
        if !device.can(capability::DISPLAY) {
            return Err(DisplayError::Unsupported(device.id));
        }
        let cart = cart.map(|mut c| {
            c.currency.get_or_insert(route.currency);
            c
        });
        // A cart is strings and numbers: serialising it cannot fail.
        let json = cart.as_ref().and_then(|c| serde_json::to_string(c).ok());
        let version = self
            .store()
            .set_display(&device.id, json.as_deref())
            .await?
            // Removed between the route and the write.
            .ok_or(DisplayError::NotPaired)?;
        let frame = CloudMessage::Display(Display {
            version,
            cart: cart.clone(),
        });
        let delivered = self.bus().deliver(&device.id, frame).await.is_ok();
        Ok(Displayed {
            device: device.id,
            version,
            cart,
            delivered,
        })
    }

    /// The `display` frame a device that (re)connects should be shown, if a POS ever set one.
    pub async fn display_frame(&self, device: &DeviceId) -> Result<Option<Display>, EngineError> {
        let Some((version, json)) = self.store().display(device).await? else {
            return Ok(None);
        };
        if version == 0 {
            return Ok(None);
        }
        // Written by `show_display` from a `Cart`; a row that no longer parses shows nothing
        // rather than failing the connection.
        let cart = json.and_then(|j| serde_json::from_str(&j).ok());
        Ok(Some(Display { version, cart }))
    }
}

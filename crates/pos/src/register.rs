//! Pairing a register: the register's identity (the protocol's [`RegisterKey`]) and what the
//! POS tells the cloud about it when it pairs.

use protocol::RegisterKey;

/// What a register says about itself when it pairs: the name the device shows, and optional
/// store contact details kept with the register.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingDetails {
    /// `POSRegisterName`, shown on the device (e.g. `Main Register`).
    pub register_name: String,
    /// `Contact Name`.
    pub contact_name: Option<String>,
    /// `Address`.
    pub address: Option<String>,
    /// `City`.
    pub city: Option<String>,
    /// `State`.
    pub state: Option<String>,
    /// `ZipCode`.
    pub zip_code: Option<String>,
    /// `Email`.
    pub email: Option<String>,
    /// `Phone`.
    pub phone: Option<String>,
}

impl PairingDetails {
    /// Details with only the register name set.
    pub fn new(register_name: impl Into<String>) -> Self {
        Self {
            register_name: register_name.into(),
            ..Self::default()
        }
    }

    /// The `PUT /Pairing/{code}` form, with the API's exact keys (`Contact Name` has a space:
    /// that is the vendor's spelling, so existing servers understand it). Unset contact fields
    /// are left out rather than sent empty.
    pub fn form(&self, register: &RegisterKey) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("POSRegisterID", register.register_id.clone()),
            ("POSRegisterName", self.register_name.clone()),
            ("POSBusinessName", register.business_name.clone()),
            ("POSVendorName", register.vendor_name.clone()),
        ];
        let contact = [
            ("Contact Name", &self.contact_name),
            ("Address", &self.address),
            ("City", &self.city),
            ("State", &self.state),
            ("ZipCode", &self.zip_code),
            ("Email", &self.email),
            ("Phone", &self.phone),
        ];
        form.extend(
            contact
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.clone()))),
        );
        form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> RegisterKey {
        RegisterKey {
            register_id: "r-1".into(),
            business_name: "Toys Shop".into(),
            vendor_name: "Till2Go".into(),
        }
    }

    #[test]
    fn minimal_form_has_the_four_required_keys() {
        let form = PairingDetails::new("Main Register").form(&register());
        assert_eq!(
            form,
            vec![
                ("POSRegisterID", "r-1".to_string()),
                ("POSRegisterName", "Main Register".to_string()),
                ("POSBusinessName", "Toys Shop".to_string()),
                ("POSVendorName", "Till2Go".to_string()),
            ]
        );
    }

    #[test]
    fn contact_fields_use_the_vendor_keys() {
        let details = PairingDetails {
            register_name: "Main".into(),
            contact_name: Some("Ann Lee".into()),
            address: Some("1 Main St".into()),
            city: Some("Sydney".into()),
            state: Some("NSW".into()),
            zip_code: Some("2000".into()),
            email: Some("ann@example.com".into()),
            phone: Some("+61 2 0000 0000".into()),
        };
        let form = details.form(&register());
        let keys: Vec<&str> = form.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "POSRegisterID",
                "POSRegisterName",
                "POSBusinessName",
                "POSVendorName",
                "Contact Name",
                "Address",
                "City",
                "State",
                "ZipCode",
                "Email",
                "Phone"
            ]
        );
        // The space in the key survives encoding (as `+`, which servers decode back).
        let encoded = serde_urlencoded::to_string(&form).unwrap_or_default();
        assert!(encoded.contains("Contact+Name=Ann+Lee"), "{encoded}");
    }
}

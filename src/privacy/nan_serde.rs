//! Serde helpers that write a non-finite `f64` as JSON `null` and read
//! `null` back as NaN, because JSON has no NaN and the audit statistics use
//! NaN for undefined values. An infinity also reads back as NaN.

use serde::{Deserialize, Deserializer, Serializer};

/// One `f64`, NaN as `null`.
pub mod number {
    use super::*;

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_f64(*value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

/// A list of `f64`, each NaN as `null`.
pub mod numbers {
    use super::*;
    use serde::ser::SerializeSeq;

    pub fn serialize<S: Serializer>(values: &[f64], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(values.len()))?;
        for value in values {
            seq.serialize_element(&value.is_finite().then_some(*value))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<f64>, D::Error> {
        let values = Vec::<Option<f64>>::deserialize(deserializer)?;
        Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "super::number")]
        value: f64,
        #[serde(with = "super::numbers")]
        values: Vec<f64>,
    }

    #[test]
    fn nan_round_trips_through_null() {
        let sample = Sample {
            value: f64::NAN,
            values: vec![1.5, f64::NAN],
        };
        let json = serde_json::to_string(&sample).unwrap();
        assert_eq!(json, r#"{"value":null,"values":[1.5,null]}"#);
        let back: Sample = serde_json::from_str(&json).unwrap();
        assert!(back.value.is_nan());
        assert_eq!(back.values[0], 1.5);
        assert!(back.values[1].is_nan());
    }
}

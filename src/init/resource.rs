//! The resource every signal carries: what `init()` adds to the SDK's own detection.

use opentelemetry_sdk::Resource;

/// `resource` with a `service.instance.id`: the one it has (say, from `OTEL_RESOURCE_ATTRIBUTES`,
/// set to the pod's name), else a random UUID, as the semantic conventions recommend, so the
/// series of two replicas of one service never collide.
pub(super) fn with_instance_id(resource: Resource) -> Resource {
    const KEY: &str = "service.instance.id";
    if resource
        .get(&opentelemetry::Key::from_static_str(KEY))
        .is_some()
    {
        return resource;
    }
    use opentelemetry_sdk::trace::IdGenerator as _;
    let mut bytes = opentelemetry_sdk::trace::RandomIdGenerator::default()
        .new_trace_id()
        .to_bytes();
    // Version 4, variant 1: a random UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let attributes = resource
        .iter()
        .map(|(k, v)| opentelemetry::KeyValue::new(k.clone(), v.clone()));
    let mut builder = Resource::builder_empty()
        .with_attributes(attributes)
        .with_attribute(opentelemetry::KeyValue::new(KEY, uuid));
    if let Some(url) = resource.schema_url() {
        builder = builder.with_schema_url(Vec::<opentelemetry::KeyValue>::new(), url.to_owned());
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance_id(resource: &Resource) -> String {
        resource
            .get(&opentelemetry::Key::from_static_str("service.instance.id"))
            .expect("service.instance.id")
            .to_string()
    }

    #[test]
    fn each_process_gets_a_random_instance_id_unless_it_has_one() {
        let named = Resource::builder_empty()
            .with_service_name("checkout")
            .build();
        let (a, b) = (with_instance_id(named.clone()), with_instance_id(named));
        let id = instance_id(&a);
        // A version-4 UUID: 8-4-4-4-12 hex digits, version 4, variant 10xx.
        let groups: Vec<&str> = id.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(
            id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
            "{id}"
        );
        assert!(
            groups[2].starts_with('4') && "89ab".contains(&groups[3][..1]),
            "{id}"
        );
        assert_ne!(id, instance_id(&b));
        // The rest of the resource is kept.
        assert_eq!(
            a.get(&opentelemetry::Key::from_static_str("service.name"))
                .map(|v| v.to_string()),
            Some("checkout".to_owned())
        );

        let pod = Resource::builder_empty()
            .with_attribute(opentelemetry::KeyValue::new(
                "service.instance.id",
                "checkout-7d9f",
            ))
            .build();
        assert_eq!(instance_id(&with_instance_id(pod)), "checkout-7d9f");
    }
}

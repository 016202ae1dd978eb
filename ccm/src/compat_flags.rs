//! Flags of upstream's `aws-cloud-controller-manager` v1.37.1 that have no effect here, so that
//! an upstream manifest starts unchanged: each is accepted, with or without a value, and named
//! in one startup warning. Those with an equivalent here are real flags in [`crate::options`].

macro_rules! compat_flags {
    ($($field:ident = $flag:literal;)*) => {
        /// Accepted for compatibility with upstream; no effect (see the startup warning).
        #[derive(Debug, Clone, Default, clap::Args)]
        pub struct CompatFlags {
            $(
                #[arg(long = $flag, hide = true, num_args = 0..=1, default_missing_value = "true")]
                pub $field: Option<String>,
            )*
        }

        impl CompatFlags {
            /// Every flag of this kind, for the reference and its drift test.
            pub const ALL: &[&str] = &[$(concat!("--", $flag)),*];

            /// The ones given on this command line.
            pub fn given(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$field.is_some() { out.push(concat!("--", $flag)); })*
                out
            }
        }
    };
}

compat_flags! {
    authentication_skip_lookup = "authentication-skip-lookup";
    authentication_token_webhook_cache_ttl = "authentication-token-webhook-cache-ttl";
    authentication_tolerate_lookup_failure = "authentication-tolerate-lookup-failure";
    authorization_webhook_cache_authorized_ttl = "authorization-webhook-cache-authorized-ttl";
    authorization_webhook_cache_unauthorized_ttl = "authorization-webhook-cache-unauthorized-ttl";
    cert_dir = "cert-dir";
    client_ca_file = "client-ca-file";
    concurrent_node_lifecycle_syncs = "concurrent-node-lifecycle-syncs";
    concurrent_node_status_updates = "concurrent-node-status-updates";
    contention_profiling = "contention-profiling";
    controller_start_interval = "controller-start-interval";
    disable_http2_serving = "disable-http2-serving";
    external_cloud_volume_plugin = "external-cloud-volume-plugin";
    feature_gates = "feature-gates";
    http2_max_streams_per_connection = "http2-max-streams-per-connection";
    kube_api_burst = "kube-api-burst";
    kube_api_content_type = "kube-api-content-type";
    kube_api_qps = "kube-api-qps";
    leader_migration_config = "leader-migration-config";
    log_flush_frequency = "log-flush-frequency";
    log_text_info_buffer_size = "log-text-info-buffer-size";
    log_text_split_stream = "log-text-split-stream";
    master = "master";
    min_resync_period = "min-resync-period";
    node_sync_period = "node-sync-period";
    permit_address_sharing = "permit-address-sharing";
    permit_port_sharing = "permit-port-sharing";
    profiling = "profiling";
    requestheader_allowed_names = "requestheader-allowed-names";
    requestheader_client_ca_file = "requestheader-client-ca-file";
    requestheader_extra_headers_prefix = "requestheader-extra-headers-prefix";
    requestheader_group_headers = "requestheader-group-headers";
    requestheader_uid_headers = "requestheader-uid-headers";
    requestheader_username_headers = "requestheader-username-headers";
    resources = "resources";
    tagging_controller_burst_limit = "tagging-controller-burst-limit";
    tagging_controller_concurrent_node_syncs = "tagging-controller-concurrent-node-syncs";
    tagging_controller_enable_batching = "tagging-controller-enable-batching";
    tagging_controller_rate_limit = "tagging-controller-rate-limit";
    tags = "tags";
    tls_cipher_suites = "tls-cipher-suites";
    tls_curve_preferences = "tls-curve-preferences";
    tls_min_version = "tls-min-version";
    tls_sni_cert_key = "tls-sni-cert-key";
    vmodule = "vmodule";
    webhook_bind_address = "webhook-bind-address";
    webhook_cert_dir = "webhook-cert-dir";
    webhook_disable_http2_serving = "webhook-disable-http2-serving";
    webhook_secure_port = "webhook-secure-port";
    webhook_tls_cert_file = "webhook-tls-cert-file";
    webhook_tls_cipher_suites = "webhook-tls-cipher-suites";
    webhook_tls_curve_preferences = "webhook-tls-curve-preferences";
    webhook_tls_min_version = "webhook-tls-min-version";
    webhook_tls_private_key_file = "webhook-tls-private-key-file";
    webhook_tls_sni_cert_key = "webhook-tls-sni-cert-key";
    webhooks = "webhooks";
}

import CCurl

extension CurlFetcher {
    /// Makes a transfer verify an https server's certificate chain and host name, against the
    /// CA file of `options.caFile` when one is given, otherwise against the system's store, and
    /// keep libcurl's own words on a failure in `errorText`. Every transfer goes through here:
    /// verification is never turned off.
    static func requireVerifiedTLS(_ t: Transfer, caFile: String?) throws {
        var results = [
            CCurl_easy_setopt_long(t.easy, CURLOPT_SSL_VERIFYPEER, 1),
            CCurl_easy_setopt_long(t.easy, CURLOPT_SSL_VERIFYHOST, 2),
            CCurl_easy_setopt_ptr(t.easy, CURLOPT_ERRORBUFFER, t.errorText),
        ]
        if let caFile { results.append(CCurl_easy_setopt_str(t.easy, CURLOPT_CAINFO, caFile)) }
        if let failed = results.first(where: { $0 != CURLE_OK }) {
            throw UpdError(.network, "libcurl: cannot require certificate verification (\(String(cString: curl_easy_strerror(failed))))")
        }
    }

    /// Whether a transfer failed because TLS could not be set up with the server: a certificate
    /// that does not verify (chain, host name, dates) or a handshake that failed.
    static func isTLSFailure(_ result: CURLcode) -> Bool {
        [CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE].contains(result)
    }

    /// Why a transfer failed, in libcurl's most precise words ("SSL certificate problem:
    /// certificate has expired" rather than "SSL peer certificate or SSH remote key was not OK").
    static func reason(_ t: Transfer, _ result: CURLcode) -> String {
        let detail = String(cString: t.errorText)
        return detail.isEmpty ? String(cString: curl_easy_strerror(result)) : detail
    }
}

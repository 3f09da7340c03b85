/// The issuer of the committed bad-token corpus (Tests/Fixtures/bad-tokens, written by
/// make-corpus.py; test-only keys): its JWKS, its ES256 private key (so the fuzzer can
/// sign what it makes up), and the configuration the corpus test uses.
enum CorpusIssuer {
    static let issuer = "https://login.corpus.test/7d3b1c2a-0000-4000-8000-00000000c0de/v2.0"
    static let audience = "3678c9e9-9681-447a-974d-d19f668fcd88"
    static let tenant = "7d3b1c2a-0000-4000-8000-00000000c0de"
    /// 2026-01-01T00:00:00Z plus a day: after every corpus token's iat, before its exp.
    static let now: Int64 = 1_767_225_600 + 86_400
    static let ecKid = "ec-1"

    static let jwks = #"{"keys":[{"kty":"RSA","use":"sig","kid":"rsa-1","alg":"RS256","n":"v28RJZ__mtLVT7MP3yT_VXkisvvjcbknNvihmID_TZYCr0PDf3ecfun3kJd85CXnkQpXRVa8yQOmHO1TA_xYfhTTbFEko64KyKcGTgaVZhmQj0FIw_wItoeGZ43TW18K2Of9zH52S0TW4MaiyZXPGOoVJlPZxNF3w-mYPT1C0L8_skL0xk2oux7mf4GaNp9S33o72DaXaO2wnsYrLNIV0KFQWQapF2VcqU8PfmxsTqCncfa5_Wpo6BIx709PNwbFwwM7o146ixPQq0YfjlDuMvZ3HjUroN7l9MyzfWlv9xHSuy8iWT6YScm1eu3WvpEHx6t8iDBr_jeGGSzTyXIWWQ","e":"AQAB"},{"kty":"RSA","use":"sig","kid":"rsa-2","alg":"RS256","n":"3O7wSr3OSR_vB658OI0Y-LXAmhVsb8IBhMdp5Fa4knvlmxedNX_gEiKmzQZexdQua2bVi-onqItQVEhSydKDSANMUwm9h1x0IDwEAI3Qvqa3koFOWSyqG5V1DP4YGM3p26W4pRGCRTwwhp7jbyGQAdMZ-1U-eNwBvRBj7L-Cx5TVQhZ9abXkf_VBZpkjH1Y5lnTEBv-dkkCWYpxqh3TzoP0QRbCN2ZStph87AqTaNCzip_a4YtctYV7N3s7WamECM-17a8FCw3uE0EnDyb_1fECeXNzbdmShm12ar86ouSHFQ75ZWF7pt7D619X3a5YwLlVGa02Xy_7mGsixMFZyNw","e":"AQAB"},{"kty":"EC","use":"sig","kid":"ec-1","alg":"ES256","crv":"P-256","x":"rev8wvhhSwfimSPSdHruXhlusQ3qVqzXAuF68r6rTmo","y":"SDxi58yHCi2ulSu20DszdNTDURjPjgUZ8yG8DYuYfEQ"},{"kty":"RSA","use":"enc","kid":"enc-1","alg":"RS256","n":"oSe1GjRyMH5CVBWbpLNCr-nLKvj_cIoGrhy0lbIMj4EFUBhd6tUQdq18g9GD-DO0jFk_m-e1ALhparjAF3IBNCQddYQbrKSnPB8OumgKphigWeszZ7Jt24G5iltuBYbwZ1yGB6T6t9839Vv55UjfbVP5ae0jKhtMyo_x4JK0kuxsy7R8gYv5ZfSwKCTp9_vu6zxI9rB74LKk9au75F8u7vocIrll0lTULosaxcuDaUXjyNe8SovpBjbwXxmr7hWUmgio7pfd8ZyluMZZPN5MlnzhEp3VTUtxz0npQUh6xbD9lv3yy8-TjYX2KyxJ-CTKqlzQRME4LOW3BVRkFzPlOQ","e":"AQAB"}]}"#

    static let ecPrivateKeyPEM = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzgTroPZvGy58tbIs
JmXSYpyTHdjsD2s3f0bi5x+zY2OhRANCAASt6/zC+GFLB+KZI9J0eu5eGW6xDepW
rNcC4XryvqtOakg8YufMhwotrpUrttA7M3TUw1EYz44FGfMhvA2LmHxE
-----END PRIVATE KEY-----
"""
}

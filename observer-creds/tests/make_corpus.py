#!/usr/bin/env python3
"""Regenerates the fixture corpus (tests/corpus/) and its expected identities.

Every secret here is synthetic. Keys and certificates are made fresh with
ssh-keygen and openssl, and the expected fingerprints are computed by those
same tools, independently of the parsers under test. Keyed (HMAC) ids are
written as {"keyed": [kind, secret]}: the corpus test computes them with the
test key, so the expected file never depends on this script's key.

Run from anywhere: python3 observer-creds/tests/make_corpus.py
"""
import base64, hashlib, json, os, shutil, subprocess, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
cases = []


def sh(*args, input=None):
    return subprocess.run(args, check=True, capture_output=True, input=input).stdout


def write(name, data):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def case(name, fmt, ids=None, unparsed=None, kind="", secrets=()):
    """ids: list of (kind, id) or (kind, id, {attr: value}); id may be {"keyed": [kind, secret]}."""
    entry = {"file": name, "format": fmt, "kind": kind, "secrets": list(secrets)}
    if ids is not None:
        entry["identities"] = [
            {"kind": i[0], "id": i[1], "attributes": (i[2] if len(i) > 2 else {})} for i in ids
        ]
    if unparsed:
        entry["unparsed"] = unparsed
    cases.append(entry)


def keyed(kind, secret):
    return {"keyed": [kind, secret]}


def b64url(obj):
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(claims):
    return b64url({"alg": "RS256", "kid": "synthetic"}) + "." + b64url(claims) + "." + base64.urlsafe_b64encode(b"not-a-signature-synthetic").rstrip(b"=").decode()


def cert_fp(pem_path):
    out = sh("openssl", "x509", "-in", pem_path, "-noout", "-fingerprint", "-sha256").decode()
    return out.strip().split("=", 1)[1].replace(":", "").upper()


def spki_id(key_path):
    der = sh("openssl", "pkey", "-in", key_path, "-pubout", "-outform", "DER")
    return "spki-sha256:" + hashlib.sha256(der).hexdigest()


def ssh_fp(path):
    return sh("ssh-keygen", "-l", "-E", "sha256", "-f", path).decode().split()[1]


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    tmp = tempfile.mkdtemp()

    # --- AWS -----------------------------------------------------------
    write("aws/credentials", """# three profiles in one file
[default]
aws_access_key_id = AKIAIOSFODNN7EXAMPLE
aws_secret_access_key = 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

[prod]
aws_access_key_id=AKIAI44QH8DHBSYNTHET
aws_secret_access_key=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbSYNTHETIC2

[ci]
aws_access_key_id = ASIAJEXAMPLEXEG2JICE
aws_secret_access_key = 9drTJvcXLB89EXAMPLELB8923FB892xMFISYNTH3
aws_session_token = IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENSYNTHETIC4
""")
    case("aws/credentials", "aws-ini", [
        ("aws.access_key", "AKIAIOSFODNN7EXAMPLE", {"nhi.aws.profile": "default"}),
        ("aws.access_key", "AKIAI44QH8DHBSYNTHET", {"nhi.aws.profile": "prod"}),
        ("aws.session_key", "ASIAJEXAMPLEXEG2JICE", {"nhi.aws.profile": "ci"}),
    ], secrets=["wJalrXUtnFEMI/K7MDENG/bPxRfiCYSYNTHETIC1", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbSYNTHETIC2",
                "9drTJvcXLB89EXAMPLELB8923FB892xMFISYNTH3", "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKENSYNTHETIC4"])
    write("aws/config", """[default]
region = eu-west-1
output = json

[profile deploy]
role_arn = arn:aws:iam::123456789012:role/deploy
source_profile = default
s3 =
    max_concurrent_requests = 20

[profile sso-dev]
sso_session = corp
sso_account_id = 210987654321
sso_role_name = Developer

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-west-1

[profile helper]
credential_process = /opt/bin/get-creds --secret SYNTHETIC-PROCESS-SECRET-5
""")
    case("aws/config", "aws-ini", [
        ("aws.role", "arn:aws:iam::123456789012:role/deploy", {"nhi.aws.profile": "deploy", "nhi.aws.source_profile": "default"}),
        ("aws.sso_role", "aws-sso:210987654321/Developer", {"nhi.aws.profile": "sso-dev"}),
        ("aws.credential_process", keyed("aws.credential_process", "/opt/bin/get-creds --secret SYNTHETIC-PROCESS-SECRET-5"), {"nhi.aws.profile": "helper"}),
    ], secrets=["SYNTHETIC-PROCESS-SECRET-5"])
    write("aws/sso/cache/session.json", json.dumps({
        "startUrl": "https://corp.awsapps.com/start", "region": "eu-west-1",
        "accessToken": "aoaSYNTHETICSSOACCESSTOKEN6", "expiresAt": "2030-01-01T00:00:00Z",
        "refreshToken": "aorSYNTHETICSSOREFRESHTOKEN7", "clientId": "synthetic-client", "clientSecret": "SYNTHETICCLIENTSECRET8"}))
    case("aws/sso/cache/session.json", "aws-sso-cache", [
        ("aws.sso_session", "https://corp.awsapps.com/start", {"nhi.aws.region": "eu-west-1"}),
    ], secrets=["aoaSYNTHETICSSOACCESSTOKEN6", "aorSYNTHETICSSOREFRESHTOKEN7", "SYNTHETICCLIENTSECRET8"])
    write("aws/cli/cache/role.json", json.dumps({
        "Credentials": {"AccessKeyId": "ASIAZSYNTHETICKEY123", "SecretAccessKey": "SYNTHETICCLICACHESECRETKEY9",
                        "SessionToken": "SYNTHETICCLICACHESESSIONTOKEN10", "Expiration": "2030-01-01T01:00:00+00:00"},
        "AssumedRoleUser": {"AssumedRoleId": "AROASYNTHETIC:botocore-session-1",
                            "Arn": "arn:aws:sts::123456789012:assumed-role/deploy/botocore-session-1"},
        "ResponseMetadata": {}}))
    case("aws/cli/cache/role.json", "aws-cli-cache", [
        ("aws.assumed_role", "arn:aws:sts::123456789012:assumed-role/deploy/botocore-session-1",
         {"nhi.aws.access_key_id": "ASIAZSYNTHETICKEY123"}),
    ], secrets=["SYNTHETICCLICACHESECRETKEY9", "SYNTHETICCLICACHESESSIONTOKEN10"])

    # --- GCP -----------------------------------------------------------
    sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"{tmp}/gcp.key")
    gcp_key = open(f"{tmp}/gcp.key").read()
    write("gcp/service-account.json", json.dumps({
        "type": "service_account", "project_id": "synthetic-project", "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": gcp_key, "client_email": "deployer@synthetic-project.iam.gserviceaccount.com",
        "client_id": "100000000000000000001", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token"}, indent=2))
    case("gcp/service-account.json", "gcp-json", [
        ("gcp.service_account_key", "deployer@synthetic-project.iam.gserviceaccount.com/0123456789abcdef0123456789abcdef01234567",
         {"nhi.gcp.project_id": "synthetic-project"}),
    ], secrets=[l for l in gcp_key.splitlines() if "-----" not in l][:3])
    write("gcp/application_default_credentials.json", json.dumps({
        "account": "", "client_id": "764086051850-synthetic.apps.googleusercontent.com", "client_secret": "d-FL95Q19qSYNTHETIC11",
        "quota_project_id": "synthetic-project", "refresh_token": "1//0gSYNTHETICREFRESHTOKEN12", "type": "authorized_user"}))
    case("gcp/application_default_credentials.json", "gcp-json", [
        ("gcp.authorized_user", keyed("gcp.authorized_user", "1//0gSYNTHETICREFRESHTOKEN12")),
    ], secrets=["d-FL95Q19qSYNTHETIC11", "1//0gSYNTHETICREFRESHTOKEN12"])
    write("gcp/external-account.json", json.dumps({
        "type": "external_account", "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/aws",
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/runner@synthetic-project.iam.gserviceaccount.com:generateAccessToken",
        "token_url": "https://sts.googleapis.com/v1/token", "credential_source": {"environment_id": "aws1"}}))
    case("gcp/external-account.json", "gcp-json", [
        ("gcp.external_account", "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/aws",
         {"nhi.gcp.impersonated_service_account": "runner@synthetic-project.iam.gserviceaccount.com"}),
    ])

    # --- Azure ---------------------------------------------------------
    write("azure/msal_token_cache.json", json.dumps({
        "Account": {"uid.utid-login.microsoftonline.com-utid": {"home_account_id": "uid.utid", "environment": "login.microsoftonline.com",
                     "realm": "11111111-2222-3333-4444-555555555555", "local_account_id": "uid", "username": "alice@synthetic.example", "authority_type": "MSSTS"}},
        "RefreshToken": {"k1": {"credential_type": "RefreshToken", "secret": "0.SYNTHETICAZUREREFRESH13", "home_account_id": "uid.utid", "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"}},
        "AccessToken": {"k2": {"credential_type": "AccessToken", "secret": "eyJSYNTHETICAZUREACCESS14", "home_account_id": "", "client_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "realm": "11111111-2222-3333-4444-555555555555"}},
        "IdToken": {}, "AppMetadata": {}}))
    case("azure/msal_token_cache.json", "azure-cli", [
        ("azure.user", "alice@synthetic.example", {"nhi.azure.tenant_id": "11111111-2222-3333-4444-555555555555"}),
        ("azure.service_principal", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee@11111111-2222-3333-4444-555555555555"),
    ], secrets=["0.SYNTHETICAZUREREFRESH13", "eyJSYNTHETICAZUREACCESS14"])
    write("azure/azureProfile.json", "\ufeff" + json.dumps({"installationId": "x", "subscriptions": [
        {"id": "sub-1", "name": "Dev", "tenantId": "tenant-1", "user": {"name": "alice@synthetic.example", "type": "user"}, "isDefault": True},
        {"id": "sub-2", "name": "Ops", "tenantId": "tenant-1", "user": {"name": "aaaaaaaa-0000-1111-2222-333333333333", "type": "servicePrincipal"}}]}))
    case("azure/azureProfile.json", "azure-cli", [
        ("azure.user", "alice@synthetic.example", {"nhi.azure.subscription_id": "sub-1"}),
        ("azure.service_principal", "aaaaaaaa-0000-1111-2222-333333333333@tenant-1"),
    ])
    write("azure/service_principal_entries.json", json.dumps([
        {"client_id": "aaaaaaaa-0000-1111-2222-333333333333", "tenant": "tenant-1", "client_secret": "SYNTHETICAZURESPSECRET15"}]))
    case("azure/service_principal_entries.json", "azure-cli", [
        ("azure.service_principal", "aaaaaaaa-0000-1111-2222-333333333333@tenant-1"),
    ], secrets=["SYNTHETICAZURESPSECRET15"])

    # --- TLS keys and certificates ---------------------------------------
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{tmp}/server.key", "-out", f"{tmp}/server.crt",
       "-days", "3650", "-subj", "/CN=synthetic.example/O=nhi-observer tests", "-addext", "basicConstraints=critical,CA:FALSE")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{tmp}/svid.key",
       "-out", f"{tmp}/svid.crt", "-days", "3650", "-subj", "/O=SPIRE", "-addext", "subjectAltName=URI:spiffe://example.org/ns/prod/sa/api",
       "-addext", "basicConstraints=critical,CA:FALSE")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes", "-keyout", f"{tmp}/ca.key",
       "-out", f"{tmp}/ca.crt", "-days", "3650", "-subj", "/CN=Synthetic Root CA", "-addext", "basicConstraints=critical,CA:TRUE")
    sh("openssl", "genpkey", "-algorithm", "ED25519", "-out", f"{tmp}/ed.key")
    sh("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{tmp}/sec1.key")
    sh("openssl", "genrsa", "-traditional", "-out", f"{tmp}/pkcs1.key", "2048")
    sh("openssl", "rsa", "-in", f"{tmp}/pkcs1.key", "-aes128", "-passout", "pass:synthetic", "-traditional", "-out", f"{tmp}/enc.key")
    server_key, server_crt = open(f"{tmp}/server.key").read(), open(f"{tmp}/server.crt").read()
    fp_server, spki_server = cert_fp(f"{tmp}/server.crt"), spki_id(f"{tmp}/server.key")
    def key_secret(path):
        return [l for l in open(path).read().splitlines() if "-----" not in l and ":" not in l][1]
    write("tls/server.pem", server_crt + server_key)
    case("tls/server.pem", "tls", [
        ("x509.certificate", fp_server, {"nhi.x509.spki_sha256": spki_server}),
        ("tls.private_key", spki_server, {"nhi.key.algorithm": "rsa"}),
    ], secrets=[key_secret(f"{tmp}/server.key")])
    write("tls/server.crt", server_crt)
    case("tls/server.crt", "tls", [("x509.certificate", fp_server)])
    der = sh("openssl", "x509", "-in", f"{tmp}/server.crt", "-outform", "DER")
    write("tls/server.der", der)
    case("tls/server.der", "tls", [("x509.certificate", fp_server)])
    write("tls/pkcs8-rsa.key", server_key)
    case("tls/pkcs8-rsa.key", "tls", [("tls.private_key", spki_server)], secrets=[key_secret(f"{tmp}/server.key")])
    write("tls/ec-sec1.key", open(f"{tmp}/sec1.key").read())
    case("tls/ec-sec1.key", "tls", [("tls.private_key", spki_id(f"{tmp}/sec1.key"), {"nhi.key.algorithm": "ecdsa"})],
         secrets=[key_secret(f"{tmp}/sec1.key")])
    write("tls/ed25519.key", open(f"{tmp}/ed.key").read())
    case("tls/ed25519.key", "tls", [("tls.private_key", spki_id(f"{tmp}/ed.key"), {"nhi.key.algorithm": "ed25519"})],
         secrets=[open(f"{tmp}/ed.key").read().splitlines()[1]])
    write("tls/rsa-pkcs1.key", open(f"{tmp}/pkcs1.key").read())
    case("tls/rsa-pkcs1.key", "tls", [("tls.private_key", spki_id(f"{tmp}/pkcs1.key"))], secrets=[key_secret(f"{tmp}/pkcs1.key")])
    enc = open(f"{tmp}/enc.key").read()
    write("tls/encrypted.key", enc)
    enc_der = base64.b64decode("".join(l for l in enc.splitlines() if "-----" not in l and ":" not in l and l.strip()))
    case("tls/encrypted.key", "tls", [("tls.private_key", {"keyed_bytes": ["tls.private_key", base64.b64encode(b"RSA PRIVATE KEY\0" + enc_der).decode()]}, {"nhi.key.encrypted": "true"})])
    sh("openssl", "pkcs12", "-export", "-in", f"{tmp}/server.crt", "-inkey", f"{tmp}/server.key", "-out", f"{tmp}/plain.p12",
       "-keypbe", "NONE", "-certpbe", "NONE", "-nomac", "-passout", "pass:")
    write("tls/plain.p12", open(f"{tmp}/plain.p12", "rb").read())
    case("tls/plain.p12", "tls", [("x509.certificate", fp_server), ("tls.private_key", spki_server)])
    sh("openssl", "pkcs12", "-export", "-in", f"{tmp}/server.crt", "-inkey", f"{tmp}/server.key", "-out", f"{tmp}/enc.p12", "-passout", "pass:synthetic")
    enc_p12 = open(f"{tmp}/enc.p12", "rb").read()
    write("tls/encrypted.p12", enc_p12)
    case("tls/encrypted.p12", "tls", [("tls.pkcs12", {"keyed_bytes": ["tls.pkcs12", base64.b64encode(enc_p12).decode()]}, {"nhi.credential.encrypted": "true"})])
    write("spiffe/svid.pem", open(f"{tmp}/svid.crt").read())
    case("spiffe/svid.pem", "tls", [("spiffe.x509_svid", "spiffe://example.org/ns/prod/sa/api", {"nhi.x509.sha256": cert_fp(f"{tmp}/svid.crt")})])
    write("spiffe/svid_key.pem", open(f"{tmp}/svid.key").read())
    case("spiffe/svid_key.pem", "tls", [("tls.private_key", spki_id(f"{tmp}/svid.key"))], secrets=[key_secret(f"{tmp}/svid.key")])
    write("tls/ca.pem", open(f"{tmp}/ca.crt").read())
    case("tls/ca.pem", "tls", [("x509.ca_certificate", cert_fp(f"{tmp}/ca.crt"))])

    # --- SSH -------------------------------------------------------------
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploy@synthetic", "-f", f"{tmp}/id_ed25519")
    sh("ssh-keygen", "-q", "-t", "ecdsa", "-b", "384", "-N", "", "-C", "", "-f", f"{tmp}/id_ecdsa")
    sh("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", f"{tmp}/id_rsa")
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "synthetic-passphrase", "-f", f"{tmp}/id_enc")
    for name, src, extra in [("ssh/id_ed25519", "id_ed25519", {"nhi.key.algorithm": "ssh-ed25519", "nhi.ssh.comment": "deploy@synthetic"}),
                             ("ssh/id_ecdsa", "id_ecdsa", {"nhi.key.algorithm": "ecdsa-sha2-nistp384"}),
                             ("ssh/id_rsa", "id_rsa", {"nhi.key.algorithm": "rsa"}),
                             ("ssh/id_encrypted", "id_enc", {"nhi.key.encrypted": "true"})]:
        write(name, open(f"{tmp}/{src}").read())
        case(name, "ssh-private-key", [("ssh.private_key", ssh_fp(f"{tmp}/{src}.pub"), extra)],
             secrets=[open(f"{tmp}/{src}").read().splitlines()[2]])
    write("ssh/id_ed25519.pub", open(f"{tmp}/id_ed25519.pub").read())
    case("ssh/id_ed25519.pub", "ssh-private-key", [("ssh.public_key", ssh_fp(f"{tmp}/id_ed25519.pub"))])
    # PKCS#8 RSA key (OpenSSL 3 default) used as an SSH key.
    write("ssh/id_pkcs8", server_key)
    pub = sh("ssh-keygen", "-y", "-f", os.path.join(OUT, "ssh/id_pkcs8")) if os.chmod(os.path.join(OUT, "ssh/id_pkcs8"), 0o600) is None else b""
    with open(f"{tmp}/pk8.pub", "wb") as f:
        f.write(pub)
    case("ssh/id_pkcs8", "ssh-private-key", [("ssh.private_key", ssh_fp(f"{tmp}/pk8.pub"))])

    # --- Kubernetes --------------------------------------------------------
    sa_claims = {"aud": ["https://kubernetes.default.svc.cluster.local"], "exp": 1893456000, "iat": 1700000000,
                 "iss": "https://kubernetes.default.svc.cluster.local",
                 "kubernetes.io": {"namespace": "payments", "node": {"name": "node-1", "uid": "n-uid"},
                                   "pod": {"name": "api-7d4b9", "uid": "pod-uid-1"},
                                   "serviceaccount": {"name": "api", "uid": "sa-uid-1"}},
                 "sub": "system:serviceaccount:payments:api"}
    sa_token = jwt(sa_claims)
    write("k8s/serviceaccount/token", sa_token)
    case("k8s/serviceaccount/token", "jwt", [("kubernetes.service_account_token", "payments/api",
         {"nhi.k8s.service_account.uid": "sa-uid-1", "nhi.k8s.token.pod": "api-7d4b9", "nhi.credential.expires_at": "2030-01-01T00:00:00Z"})],
         kind="kubernetes.service_account_token", secrets=[sa_token.split(".")[2]])
    write("k8s/pod-volume/token", sa_token)
    case("k8s/pod-volume/token", "token", [("kubernetes.service_account_token", "payments/api")], kind="opaque.token")
    irsa = jwt(dict(sa_claims, aud=["sts.amazonaws.com"], iss="https://oidc.eks.eu-west-1.amazonaws.com/id/SYNTHETIC"))
    write("k8s/eks-irsa-token", irsa)
    case("k8s/eks-irsa-token", "jwt", [("aws.eks.irsa_token", "payments/api", {"nhi.jwt.audience": "sts.amazonaws.com"})],
         kind="aws.eks.irsa_token")
    legacy = jwt({"iss": "kubernetes/serviceaccount", "kubernetes.io/serviceaccount/namespace": "kube-system",
                  "kubernetes.io/serviceaccount/secret.name": "builder-token-x", "kubernetes.io/serviceaccount/service-account.name": "builder",
                  "kubernetes.io/serviceaccount/service-account.uid": "sa-uid-2", "sub": "system:serviceaccount:kube-system:builder"})
    write("k8s/legacy-token", legacy)
    case("k8s/legacy-token", "jwt", [("kubernetes.service_account_token", "kube-system/builder", {"nhi.k8s.service_account.uid": "sa-uid-2"})])
    svid = jwt({"sub": "spiffe://example.org/ns/prod/sa/api", "aud": ["vault"], "exp": 1893456000})
    write("spiffe/jwt_svid.token", svid)
    case("spiffe/jwt_svid.token", "jwt", [("spiffe.jwt_svid", "spiffe://example.org/ns/prod/sa/api")])
    cert_b64 = base64.b64encode(server_crt.encode()).decode()
    kubeconfig = f"""apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster:
    server: https://prod.k8s.synthetic:6443
    certificate-authority-data: {base64.b64encode(b"not checked").decode()}
- name: dev
  cluster:
    server: https://dev.k8s.synthetic:6443
contexts:
- name: prod-admin
  context: {{cluster: prod, user: admin}}
- name: prod-ci
  context: {{cluster: prod, user: ci}}
- name: dev-eks
  context: {{cluster: dev, user: eks}}
- name: dev-basic
  context: {{cluster: dev, user: basic}}
current-context: prod-admin
users:
- name: admin
  user:
    client-certificate-data: {cert_b64}
    client-key-data: {base64.b64encode(server_key.encode()).decode()}
- name: ci
  user:
    token: {sa_token}
- name: eks
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: aws
      args: [eks, get-token, --cluster-name, dev, --token, SYNTHETIC-EXEC-ARG-SECRET-16]
- name: basic
  user:
    username: operator
    password: SYNTHETIC-KUBE-PASSWORD-17
- name: opaque
  user:
    token: SYNTHETICOPAQUEKUBETOKEN18
"""
    write("kube/config", kubeconfig)
    case("kube/config", "kubeconfig", [
        ("kubernetes.client_certificate", fp_server, {"nhi.k8s.user": "admin", "nhi.k8s.cluster.server": "https://prod.k8s.synthetic:6443"}),
        ("kubernetes.service_account_token", "payments/api", {"nhi.k8s.user": "ci"}),
        ("kubernetes.exec_plugin", "exec:aws eks get-token --cluster-name dev --token <redacted>", {"nhi.k8s.context": "dev-eks"}),
        ("kubernetes.basic_auth", "operator@https://dev.k8s.synthetic:6443"),
        ("kubernetes.token", keyed("kubernetes.token", "SYNTHETICOPAQUEKUBETOKEN18")),
    ], secrets=["SYNTHETIC-EXEC-ARG-SECRET-16", "SYNTHETIC-KUBE-PASSWORD-17", "SYNTHETICOPAQUEKUBETOKEN18",
                base64.b64encode(server_key.encode()).decode()[40:80], sa_token.split(".")[2]])

    # --- Registries and tools ---------------------------------------------
    write("docker/config.json", json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"builder:SYNTHETIC-DOCKER-PASSWORD-19").decode()},
        "ghcr.io": {"auth": base64.b64encode(b"octocat:ghp_SYNTHETICGHCRTOKEN0000000000000000020").decode()},
        "registry.synthetic:5000": {"identitytoken": "SYNTHETIC-IDENTITY-TOKEN-21"},
        "quay.io": {}},
        "credsStore": "desktop", "credHelpers": {"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}}, indent=1))
    case("docker/config.json", "docker-auth", [
        ("registry.auth", "octocat@ghcr.io"),
        ("registry.auth", "builder@index.docker.io"),
        ("registry.credential_helper", "desktop@quay.io"),
        ("registry.token", keyed("registry.token", "SYNTHETIC-IDENTITY-TOKEN-21")),
        ("registry.credential_helper", "ecr-login@123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
    ], secrets=["SYNTHETIC-DOCKER-PASSWORD-19", "ghp_SYNTHETICGHCRTOKEN0000000000000000020", "SYNTHETIC-IDENTITY-TOKEN-21",
                base64.b64encode(b"builder:SYNTHETIC-DOCKER-PASSWORD-19").decode()])
    write("containers/auth.json", json.dumps({"auths": {"quay.io": {"auth": base64.b64encode(b"robot+ci:SYNTHETIC-PODMAN-22").decode()}}}))
    case("containers/auth.json", "docker-auth", [("registry.auth", "robot+ci@quay.io")], secrets=["SYNTHETIC-PODMAN-22"])
    write("netrc/.netrc", """machine api.synthetic.example login deployer password SYNTHETIC-NETRC-PASSWORD-23
machine github.com
  password ghp_SYNTHETICNETRCTOKEN00000000000000024
default login anonymous password guest-SYNTHETIC-25
""")
    case("netrc/.netrc", "netrc", [
        ("netrc.login", "deployer@api.synthetic.example"),
        ("github.pat", keyed("github.pat", "ghp_SYNTHETICNETRCTOKEN00000000000000024")),
        ("netrc.login", "anonymous@default"),
    ], secrets=["SYNTHETIC-NETRC-PASSWORD-23", "ghp_SYNTHETICNETRCTOKEN00000000000000024", "guest-SYNTHETIC-25"])
    write("git/.git-credentials", """https://alice:SYNTHETIC-GIT-PASSWORD-26@git.synthetic.example
https://x-access-token:ghs_SYNTHETICGITAPPTOKEN000000000000027@github.com
https://oauth2:glpat-SYNTHETICGITLAB00028@gitlab.com:443/group/repo.git
""")
    case("git/.git-credentials", "git-credentials", [
        ("git.credential", "alice@git.synthetic.example"),
        ("github.app_token", keyed("github.app_token", "ghs_SYNTHETICGITAPPTOKEN000000000000027")),
        ("gitlab.pat", keyed("gitlab.pat", "glpat-SYNTHETICGITLAB00028")),
    ], secrets=["SYNTHETIC-GIT-PASSWORD-26", "ghs_SYNTHETICGITAPPTOKEN000000000000027", "glpat-SYNTHETICGITLAB00028"])
    write("gh/hosts.yml", """github.com:
    user: octocat
    oauth_token: gho_SYNTHETICGHCLITOKEN0000000000000029
    git_protocol: https
    users:
        octocat:
            oauth_token: gho_SYNTHETICGHCLITOKEN0000000000000029
github.synthetic.example:
    oauth_token: gho_SYNTHETICGHESTOKEN00000000000000030
""")
    case("gh/hosts.yml", "gh-hosts", [
        ("github.cli_login", "octocat@github.com"),
        ("github.oauth_token", keyed("github.oauth_token", "gho_SYNTHETICGHESTOKEN00000000000000030")),
    ], secrets=["gho_SYNTHETICGHCLITOKEN0000000000000029", "gho_SYNTHETICGHESTOKEN00000000000000030"])
    write("npm/.npmrc", """registry=https://registry.npmjs.org/
//registry.npmjs.org/:_authToken=npm_SYNTHETICNPMTOKEN000000000000000031
//npm.synthetic.example/:_auth=""" + base64.b64encode(b"ci-bot:SYNTHETIC-NPM-PASSWORD-32").decode() + """
//npm.pkg.github.com/:_authToken=${GITHUB_TOKEN}
""")
    case("npm/.npmrc", "npmrc", [
        ("npm.token", keyed("npm.token", "npm_SYNTHETICNPMTOKEN000000000000000031"), {"nhi.registry": "registry.npmjs.org"}),
        ("npm.login", "ci-bot@npm.synthetic.example"),
    ], secrets=["npm_SYNTHETICNPMTOKEN000000000000000031", "SYNTHETIC-NPM-PASSWORD-32"])
    write("pypi/.pypirc", """[distutils]
index-servers =
    pypi
    private

[pypi]
username = __token__
password = pypi-SYNTHETICPYPITOKEN0000000000000033

[private]
repository = https://pypi.synthetic.example/simple/
username = uploader
password = SYNTHETIC-PYPI-PASSWORD-34
""")
    case("pypi/.pypirc", "pypirc", [
        ("pypi.token", keyed("pypi.token", "pypi-SYNTHETICPYPITOKEN0000000000000033"), {"nhi.pypi.index": "pypi"}),
        ("pypi.login", "uploader@pypi.synthetic.example"),
    ], secrets=["pypi-SYNTHETICPYPITOKEN0000000000000033", "SYNTHETIC-PYPI-PASSWORD-34"])
    write("vault/.vault-token", "hvs.SYNTHETICVAULTTOKEN0000000035\n")
    case("vault/.vault-token", "token", [("vault.service_token", keyed("vault.service_token", "hvs.SYNTHETICVAULTTOKEN0000000035"))],
         kind="vault.token", secrets=["hvs.SYNTHETICVAULTTOKEN0000000035"])
    write("vault/legacy-token", "s.SYNTHETICLEGACYVAULT36\n")
    case("vault/legacy-token", "token", [("vault.token", keyed("vault.token", "s.SYNTHETICLEGACYVAULT36"))],
         kind="vault.token", secrets=["s.SYNTHETICLEGACYVAULT36"])
    write("pg/.pgpass", "db.synthetic.example:5432:orders:app:SYNTHETIC-PG-PASSWORD-37\n*:*:*:backup:SYNTHETIC\\:PG\\\\38\n")
    case("pg/.pgpass", "pgpass", [("postgres.password", "app@db.synthetic.example:5432/orders"),
                                  ("postgres.password", "backup@*:*/*")],
         secrets=["SYNTHETIC-PG-PASSWORD-37", "SYNTHETIC\\:PG"])
    write("terraform/credentials.tfrc.json", json.dumps({"credentials": {"app.terraform.io": {"token": "SYNTHETICTF.atlasv1.SYNTHETICTERRAFORMTOKEN39"}}}))
    case("terraform/credentials.tfrc.json", "terraform-credentials", [
        ("terraform.token", keyed("terraform.token", "SYNTHETICTF.atlasv1.SYNTHETICTERRAFORMTOKEN39"), {"nhi.server.address": "app.terraform.io"})],
        secrets=["SYNTHETICTF.atlasv1.SYNTHETICTERRAFORMTOKEN39"])
    write("dotenv/.env", """# app settings
APP_ENV=production
AWS_ACCESS_KEY_ID=AKIAENVSYNTHETIC0040
AWS_SECRET_ACCESS_KEY="SYNTHETICENVAWSSECRET41"
export SLACK_BOT=xoxb-SYNTHETIC-SLACK-000000000042
DATABASE_PASSWORD='SYNTHETIC-DB-PASSWORD-43'
STRIPE_KEY=sk_live_SYNTHETICSTRIPE00000000044
""")
    case("dotenv/.env", "dotenv", [
        ("aws.access_key", "AKIAENVSYNTHETIC0040", {"nhi.env.name": "AWS_ACCESS_KEY_ID"}),
        ("secret.value", keyed("secret.value", "SYNTHETICENVAWSSECRET41"), {"nhi.env.name": "AWS_SECRET_ACCESS_KEY"}),
        ("slack.bot_token", keyed("slack.bot_token", "xoxb-SYNTHETIC-SLACK-000000000042"), {"nhi.env.name": "SLACK_BOT"}),
        ("secret.value", keyed("secret.value", "SYNTHETIC-DB-PASSWORD-43"), {"nhi.env.name": "DATABASE_PASSWORD"}),
        ("stripe.secret_key", keyed("stripe.secret_key", "sk_live_SYNTHETICSTRIPE00000000044"), {"nhi.env.name": "STRIPE_KEY"}),
    ], secrets=["SYNTHETICENVAWSSECRET41", "xoxb-SYNTHETIC-SLACK-000000000042", "SYNTHETIC-DB-PASSWORD-43", "sk_live_SYNTHETICSTRIPE00000000044"])
    for tok, kind in [("github_pat_11SYNTHETIC0000000000_abcdefSYNTHETIC45", "github.fine_grained_pat"),
                      ("glpat-SYNTHETICGITLABFILE00046", "gitlab.pat"), ("xoxb-SYNTHETIC-SLACK-FILE-047", "slack.bot_token"),
                      ("npm_SYNTHETICNPMFILE0000000000000000048", "npm.token"), ("pypi-SYNTHETICPYPIFILE00000000049", "pypi.token"),
                      ("sk_live_SYNTHETICSTRIPEFILE00050", "stripe.secret_key")]:
        name = "tokens/" + kind
        write(name, tok + "\n")
        case(name, "token", [(kind, keyed(kind, tok))], kind="opaque.token", secrets=[tok])

    # --- Malformed, hostile, binary -----------------------------------------
    write("bad/truncated.json", '{"type": "service_account", "private_key": "SYNTHETIC-TRUNCATED-51')
    case("bad/truncated.json", "gcp-json", unparsed="malformed", secrets=["SYNTHETIC-TRUNCATED-51"])
    write("bad/wrong-type.json", '{"auths": {"r.example": {"auth": 52, "username": ["SYNTHETIC-WRONG-TYPE-52"]}}}')
    case("bad/wrong-type.json", "docker-auth", unparsed="malformed", secrets=["SYNTHETIC-WRONG-TYPE-52"])
    write("bad/kubeconfig.yaml", "users:\n- name: x\n  user: {token: SYNTHETIC-BAD-YAML-53\n")
    case("bad/kubeconfig.yaml", "kubeconfig", unparsed="malformed", secrets=["SYNTHETIC-BAD-YAML-53"])
    write("bad/binary", bytes(range(256)) * 4)
    case("bad/binary", "aws-ini", unparsed="binary")
    write("bad/empty", "")
    case("bad/empty", "netrc", unparsed="empty")
    write("bad/truncated.pem", server_key[: len(server_key) // 2])
    case("bad/truncated.pem", "tls", unparsed="malformed")
    write("bad/bad-base64.pem", "-----BEGIN PRIVATE KEY-----\n!!!SYNTHETIC-NOT-BASE64-54!!!\n-----END PRIVATE KEY-----\n")
    case("bad/bad-base64.pem", "tls", unparsed="malformed", secrets=["SYNTHETIC-NOT-BASE64-54"])
    write("bad/garbage-key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAAB\n-----END OPENSSH PRIVATE KEY-----\n")
    case("bad/garbage-key", "ssh-private-key", unparsed="malformed")
    write("bad/dotenv", "NAME='SYNTHETIC-UNTERMINATED-55\n")
    case("bad/dotenv", "dotenv", unparsed="malformed", secrets=["SYNTHETIC-UNTERMINATED-55"])
    write("bad/not-a-jwt", "eyJhbGciOi.SYNTHETIC-NOT-JSON-56.sig\n")
    case("bad/not-a-jwt", "jwt", unparsed="malformed", secrets=["SYNTHETIC-NOT-JSON-56"])
    write("bad/region-only-config", "[default]\nregion = eu-west-1\n")
    case("bad/region-only-config", "aws-ini", unparsed="no_credential")

    with open(os.path.join(HERE, "corpus.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

// Throwaway keys and certificates for the registry tests, made with the `openssl` CLI (Debian's
// `openssl`, a dependency of ca-certificates): a self-signed RSA certificate whose key signs the
// token server's JWTs, and a CA plus a server certificate for 127.0.0.1/localhost (registry TLS).
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

async function openssl(args: string[]): Promise<void> {
  await run("openssl", args).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.trim() || e.message}`);
  });
}

export interface SigningCert {
  keyFile: string;
  certFile: string;
  keyPem: string;
  /** The certificate's DER, base64 (a JWT `x5c` entry). */
  certDerBase64: string;
}

/** An RSA key and a self-signed certificate for it (the token issuer's `rootcertbundle`). */
export async function makeSigningCert(dir: string, name = "token-issuer"): Promise<SigningCert> {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.crt`);
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    certFile,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
  const pem = await readFile(certFile, "utf8");
  const b64 = pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
  return { keyFile, certFile, keyPem: await readFile(keyFile, "utf8"), certDerBase64: b64 };
}

export interface ServerCerts {
  /** The CA certificate clients must trust. */
  caFile: string;
  /** Server certificate (SAN 127.0.0.1, localhost) and its key, for `http.tls`. */
  certFile: string;
  keyFile: string;
}

/** A private CA and a server certificate it signed, valid for 127.0.0.1 and localhost. */
export async function makeServerCerts(dir: string): Promise<ServerCerts> {
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.crt");
  const keyFile = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const certFile = join(dir, "server.crt");
  const ext = join(dir, "server.ext");
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    caKey,
    "-out",
    caFile,
    "-days",
    "2",
    "-subj",
    "/CN=soci test CA",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    csr,
    "-subj",
    "/CN=127.0.0.1",
  ]);
  await writeFile(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "",
    ].join("\n"),
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caFile,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    certFile,
    "-days",
    "2",
    "-extfile",
    ext,
  ]);
  return { caFile, certFile, keyFile };
}

/** A bcrypt htpasswd line (Distribution's htpasswd auth accepts bcrypt only), cost 4 for speed. */
export async function htpasswdLine(user: string, password: string): Promise<string> {
  // node has no bcrypt; Debian's python3 `crypt` module (libxcrypt) does; the password goes on stdin
  return new Promise((resolve, reject) => {
    const child = execFile(
      "python3",
      [
        "-W",
        "ignore",
        "-c",
        "import crypt,sys; print(crypt.crypt(sys.stdin.readline().rstrip('\\n'), crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
      ],
      (err, out) => {
        if (err) return reject(new Error(`python3 crypt (bcrypt) failed: ${err.message}`));
        const hash = out.trim();
        if (!/^\$2[aby]\$04\$/.test(hash)) return reject(new Error("python3 crypt did not produce a bcrypt hash"));
        resolve(`${user}:${hash}`);
      },
    );
    child.stdin!.end(`${password}\n`);
  });
}

"""A stand-in cloud metadata service for the network-sensor tests.

    imds_server.py HOST PORT ROLE TOKEN

Serves the AWS IMDSv2 token PUT and the role-credential paths with synthetic
values. The test binds it to an address it assigned inside its own network
namespace (e.g. 169.254.169.254 on that namespace's loopback): no real
metadata service is ever contacted.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST, PORT, ROLE, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
PREFIX = "/latest/meta-data/iam/security-credentials/"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token":
            self.reply(200, TOKEN)
        else:
            self.reply(404, "")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self.reply(401, "")
        elif self.path == PREFIX:
            self.reply(200, ROLE)
        elif self.path == PREFIX + ROLE:
            creds = {"Code": "Success", "AccessKeyId": "ASIAEXAMPLESYNTHETIC", "SecretAccessKey": "synthetic/secret",
                     "Token": "synthetic-session-token", "Expiration": "2099-01-01T00:00:00Z"}
            self.reply(200, json.dumps(creds))
        else:
            self.reply(404, "")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((HOST, PORT), Handler)
print("listening", flush=True)
server.serve_forever()

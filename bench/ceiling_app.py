# Copied unchanged from the team's shared bench (/work/shared/bench); edit it there.
"""Ceiling: bare Flask, fixed small JSON body for the SCIM URLs (no storage, no checks).

Only a framework floor for scimbench --no-check.  Bearer token compared, nothing else.
Run: gunicorn -w 2 -b 127.0.0.1:8101 ceiling_app:app   (env BENCH_TOKEN)
"""
import hmac
import os

from flask import Flask, Response, request

TOKEN = os.environ.get("BENCH_TOKEN", "bench-token")
app = Flask(__name__)
BODY = b'{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"1","userName":"x","active":true}'


@app.before_request
def auth():
    got = request.headers.get("Authorization", "")
    if not hmac.compare_digest(got, "Bearer " + TOKEN):
        return Response(b'{"status":"401"}', 401, content_type="application/scim+json")


@app.route("/scim/v2/Users", methods=["GET", "POST"])
@app.route("/scim/v2/Groups", methods=["GET", "POST"])
def collection():
    request.get_data()
    return Response(BODY, 201 if request.method == "POST" else 200,
                    content_type="application/scim+json")


@app.route("/scim/v2/Users/<rid>", methods=["GET", "PUT", "PATCH", "DELETE"])
@app.route("/scim/v2/Groups/<rid>", methods=["GET", "PUT", "PATCH", "DELETE"])
def item(rid):
    request.get_data()
    return Response(BODY, 200, content_type="application/scim+json")

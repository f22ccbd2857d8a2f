"""FastAPI dependencies the web modules share: the app's state, the signed-in user of a
workspace page, and the CSRF check of its forms. (The API's bearer-token user is
`api.ActorDep`.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from factbridge.web.app import WebState
from factbridge.web.security import check_csrf, page_actor
from factbridge.workflow.accounts import Actor


def state(request: Request) -> WebState:
    return request.app.state.web


WebDep = Annotated[WebState, Depends(state)]
PageActorDep = Annotated[Actor, Depends(page_actor)]
Csrf = Depends(check_csrf)

"""
What every test process shares.
"""

import os

import pytest

# The front refuses to start with a sticky route (the shipped stack.toml has
# one) and no routing-cookie key; `make run` and `make up` make
# config/front/route.key, but tests must not depend on a file outside git.
# Every front a test starts (LocalStack passes the environment on) shares
# this one, as the fronts of one deployment share theirs.
TEST_ROUTE_KEY = "test-route-key-shared-by-every-front"


@pytest.fixture(scope="session", autouse=True)
def routeKey():
    with pytest.MonkeyPatch.context() as patch:
        if not os.environ.get("WEBSTACK_FRONT_ROUTE_KEY"):
            patch.setenv("WEBSTACK_FRONT_ROUTE_KEY", TEST_ROUTE_KEY)
        yield os.environ["WEBSTACK_FRONT_ROUTE_KEY"]

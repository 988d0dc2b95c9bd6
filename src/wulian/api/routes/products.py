"""Products: import, list, read and delete thing models."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from wulian.api.deps import ApiError, CoreDep
from wulian.ports import Conflict, NotFound

router = APIRouter(prefix="/products", tags=["products"])


@router.post("", status_code=201, responses={
    200: {"description": "An existing product's thing model was replaced"},
    422: {"description": "Invalid thing model; `field` names the offending part"}})
def import_product(core: CoreDep, response: Response,
                   doc: Annotated[dict[str, Any], Body(description="A thing-model document")],
                   ) -> dict[str, Any]:
    """Create a product from its thing model, or replace the model of an existing one."""
    model, created = core.registry.import_product(doc)
    response.status_code = 201 if created else 200
    return model.to_doc()


@router.get("")
def list_products(core: CoreDep) -> dict[str, Any]:
    """All products with their thing models."""
    return {"data": [m.to_doc() for m in core.store.list_products()]}


@router.get("/{product_id}")
def get_product(core: CoreDep, product_id: str) -> dict[str, Any]:
    """One product's thing model."""
    try:
        return core.registry.product(product_id).to_doc()
    except NotFound:
        raise ApiError(404, "product_not_found", params={"product": product_id}) from None


@router.delete("/{product_id}", status_code=204)
def delete_product(core: CoreDep, product_id: str) -> Response:
    """Remove a product no device uses any more."""
    try:
        core.store.delete_product(product_id)
    except NotFound:
        raise ApiError(404, "product_not_found", params={"product": product_id}) from None
    except Conflict:
        raise ApiError(409, "product_in_use", params={"product": product_id}) from None
    core.directory.forget()
    return Response(status_code=204)

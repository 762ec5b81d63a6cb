"""The pure listing behind ``fetchflow refs`` and the editor: output schemas path by path."""

from __future__ import annotations

from pydantic import BaseModel, Field

from fetchflow.step import Step, StepConfig, StepContext
from fetchflow.workflow.refs import children, output_refs, readable_steps


class Size(BaseModel):
    width: int = Field(description="Pixels across.")
    height: int


class Node(BaseModel):
    name: str = Field(description="The node's name.")
    size: Size | None = None
    children: list[Node] = Field(default_factory=list, description="Nodes below.")


class TreeStep(Step[StepConfig, Node]):
    """Makes a tree."""

    def run(self, config: StepConfig, ctx: StepContext) -> Node:
        return Node(name="root")


def test_a_recursive_output_is_listed_once_and_optional_objects_are_opened() -> None:
    refs = {ref.path: ref for ref in output_refs("tree", TreeStep)}

    assert list(refs) == [
        "tree.output",
        "tree.output.name",
        "tree.output.size",
        "tree.output.size.width",
        "tree.output.size.height",
        "tree.output.children",
        "tree.output.children.N",
    ]
    assert refs["tree.output.size"].type == "object | null"
    assert refs["tree.output.size.width"].description == "Pixels across."
    assert refs["tree.output.children"].type == "list[object]"
    assert refs["tree.output"].description == "The output of tree. Makes a tree."


def test_children_are_one_lookup_below_and_a_number_matches_any_item() -> None:
    refs = output_refs("tree", TreeStep)

    assert [ref.path for ref in children(refs, "tree.output.size")] == [
        "tree.output.size.width",
        "tree.output.size.height",
    ]
    assert [ref.path for ref in children(refs, "tree.output.children")] == [
        "tree.output.children.N"
    ]


def test_a_step_may_read_every_step_but_itself_and_those_downstream() -> None:
    edges = {"a": (), "b": ("a",), "c": (), "d": ("b",)}

    assert readable_steps(edges, "b") == ["a", "c"]
    assert readable_steps(edges, "a") == ["c"]
    assert readable_steps(edges, "d") == ["a", "b", "c"]

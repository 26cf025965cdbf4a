// Type-checked with tsc --strict against the types openapi-typescript generates from taskapi's
// OpenAPI document (tests/test_generated_clients.py::test_typescript_types_check).
import type { components, operations, paths } from "./taskapi";

type Schemas = components["schemas"];

// A create body needs only its title: every field with a server default is optional.
export const minimal: Schemas["TaskCreate"] = { title: "Buy milk" };
export const full: Schemas["TaskCreate"] = {
  title: "Pay rent",
  description: "monthly",
  status: "in_progress",
  priority: 4,
  due_at: "2030-01-02T18:00:00Z",
  position: 3,
  project_id: null,
  parent_id: 1,
  label_ids: [1, 2],
};
export const patch: Schemas["TaskPatch"] = { status: "done" };
export const project: Schemas["ProjectCreate"] = { name: "Home" };
export const bulk: Schemas["TaskBulkCreate"] = { tasks: [minimal, full] };
export const bulkPatch: Schemas["TaskBulkPatch"] = { ids: [1, 2], changes: { priority: 0 } };

// Every field of an answer is always there: no optional chaining or undefined checks needed.
export function describe(task: Schemas["Task"]): string {
  const labels: string = task.labels.map((label) => `${label.name}${label.color ?? ""}`).join(",");
  const done: string = task.completed_at === null ? "open" : `done ${task.completed_at}`;
  const status: "todo" | "in_progress" | "done" = task.status;
  const version: number = task.version;
  const priority: 0 | 1 | 2 | 3 | 4 = task.priority;
  return `${task.id} ${task.title} ${task.description} ${status} ${priority} ${done} ${labels} v${version}`;
}

// Pages: offset pages carry total; cursor pages carry next_cursor.
export function nextCursor(page: Schemas["TaskPage"]): string | null | undefined {
  const first: Schemas["Task"] | undefined = page.items[0];
  return first === undefined ? page.next_cursor : page.next_cursor ?? String(page.total ?? 0);
}

// A problem names each offending field, with the bulk item's index when there is one.
export function offendingItems(problem: Schemas["Problem"]): number[] {
  const indexes: number[] = [];
  for (const error of problem.errors ?? []) {
    const field: string = error.field;
    const message: string = error.message;
    if (error.index !== undefined && field.length + message.length > 0) {
      indexes.push(error.index);
    }
  }
  return indexes;
}

// Operations: the list filters and the If-Match / Idempotency-Key headers are typed.
export const listQuery: operations["list_tasks"]["parameters"]["query"] = {
  status: ["todo", "done"],
  priority: [2],
  sort: "-priority,title",
  limit: 50,
};
export const ifMatch: NonNullable<operations["update_task"]["parameters"]["header"]>["If-Match"] = '"3"';
export type CreatedTask =
  paths["/api/v1/tasks"]["post"]["responses"][201]["content"]["application/json"];
export const created = (task: CreatedTask): number => task.id;
export type Replayed = paths["/api/v1/tasks"]["post"]["responses"][201]["headers"]["Idempotent-Replayed"];

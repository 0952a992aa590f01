// Drives Airlock's MCP server with the official TypeScript SDK (@modelcontextprotocol/sdk).
//
// Usage: node client.mjs PLAN_JSON
//
// PLAN_JSON says how to reach the server and which tools to call:
//   {"transport": "stdio", "command": "/path/airlock", "args": ["serve", "--stdio", ...],
//    "env": {"AIRLOCK_STATE_DIR": "..."}, "cwd": "/workspace",
//    "calls": [{"name": "read_file", "arguments": {"path": "hello.txt"}}]}
//   {"transport": "http", "url": "http://127.0.0.1:8811/mcp", "token": "optional bearer",
//    "calls": [...]}
// and optionally "approve": true or false, which declares the elicitation capability and
// answers every approval prompt (Airlock's approve_if) with accept {approve: true} or decline;
// with "approve": true, "answer": {...} is the content every accepted elicitation answers with.
// A call with "progress": true asks for progress (the SDK sends a progressToken) and its entry
// in the output gets "progress": [{progress, total, message}...], in the order received.
// "terminate": true (http) ends the session with a DELETE before closing the client.
//
// It prints one JSON object on stdout:
//   {"transport", "server": {name, version}, "tools": [Tool...], "elicitations": [message...],
//    "calls": [{"name", "result": CallToolResult} | {"name", "error": "message"}]}
// and exits 0 when it could connect and list tools (a tool error or denial is a result, not a
// failure), 1 otherwise. Diagnostics go to stderr.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { StdioClientTransport, getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

function transportFor(plan) {
  switch (plan.transport) {
    case "stdio":
      return new StdioClientTransport({
        command: plan.command,
        args: plan.args ?? [],
        // The SDK passes only a few safe variables by default; Airlock needs its own.
        env: { ...getDefaultEnvironment(), ...(plan.env ?? {}) },
        cwd: plan.cwd,
        stderr: "inherit",
      });
    case "http": {
      const headers = {};
      if (plan.token) headers.Authorization = `Bearer ${plan.token}`;
      return new StreamableHTTPClientTransport(new URL(plan.url), { requestInit: { headers } });
    }
    default:
      throw new Error(`unknown transport ${JSON.stringify(plan.transport)}: want "stdio" or "http"`);
  }
}

async function main() {
  if (process.argv.length !== 3) {
    throw new Error("usage: node client.mjs PLAN_JSON");
  }
  const plan = JSON.parse(process.argv[2]);
  const answers = typeof plan.approve === "boolean";
  const client = new Client(
    { name: "airlock-tsclient", version: "0.0.0" },
    { capabilities: answers ? { elicitation: { form: {} } } : {} },
  );
  const elicitations = [];
  if (answers) {
    client.setRequestHandler(ElicitRequestSchema, async (req) => {
      elicitations.push(req.params.message);
      if (plan.approve && plan.answer) return { action: "accept", content: plan.answer };
      return plan.approve ? { action: "accept", content: { approve: true } } : { action: "decline" };
    });
  }
  const transport = transportFor(plan);
  await client.connect(transport);
  const out = {
    transport: plan.transport,
    server: client.getServerVersion() ?? null,
    tools: [],
    elicitations,
    calls: [],
  };
  try {
    const listed = await client.listTools();
    out.tools = listed.tools;
    for (const call of plan.calls ?? []) {
      try {
        const progress = [];
        const options = call.progress ? { onprogress: (p) => progress.push(p) } : undefined;
        const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, undefined, options);
        out.calls.push(call.progress ? { name: call.name, result, progress } : { name: call.name, result });
      } catch (err) {
        out.calls.push({ name: call.name, error: String(err?.message ?? err) });
      }
    }
  } finally {
    // "terminate": true ends the HTTP session (DELETE) before closing; close alone does not.
    if (plan.terminate && typeof transport.terminateSession === "function") {
      await transport.terminateSession();
    }
    await client.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(`tsclient: ${err?.stack ?? err}\n`);
  process.exit(1);
});

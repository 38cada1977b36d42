// Starts `cadence lsp` for .campaign files: diagnostics as you type, formatting,
// the outline and quick fixes. The command is `cadence` on the PATH unless the
// setting `cadence.command` names another (such as a virtualenv's).
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("cadence").get("command") || "cadence";
  client = new LanguageClient(
    "cadence",
    "cadence",
    { command, args: ["lsp"] },
    { documentSelector: [{ scheme: "file", language: "campaign" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };

// Compile a Solidity file offline with the pinned npm `solc` (no compiler download).
// Usage: node compile.js <file.sol> <ContractName>
//   -> prints {"abi": [...], "bytecode": "0x...", "deployedBytecode": "0x..."}
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const [file, name] = process.argv.slice(2);
const input = {
  language: "Solidity",
  sources: { [path.basename(file)]: { content: fs.readFileSync(file, "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "paris",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const contract = output.contracts[path.basename(file)][name];
process.stdout.write(JSON.stringify({
  abi: contract.abi,
  bytecode: "0x" + contract.evm.bytecode.object,
  deployedBytecode: "0x" + contract.evm.deployedBytecode.object,
}));

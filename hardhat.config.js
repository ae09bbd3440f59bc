// Hardhat 3 configuration for fedledger.
//
// The compiler is the npm `solc` package's soljson.js (WASM), named by `path`: Hardhat then never
// tries to download a compiler (native solc downloads are not reachable here). Version and settings
// come from contracts/compiler.json, which fedledger/chain/compiler.py reads too; a test checks
// that both produce the same bytecode.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);
const compiler = JSON.parse(readFileSync(new URL("./contracts/compiler.json", import.meta.url), "utf8"));

export const SOLC_VERSION = compiler.version;
export const SOLC_SETTINGS = compiler.settings;

export default defineConfig({
  solidity: {
    version: SOLC_VERSION,
    path: require.resolve("solc/soljson.js"),
    settings: SOLC_SETTINGS,
  },
  // Solidity tests are the Foundry-style *.t.sol files under contracts/ (Hardhat treats them as tests).
  paths: { sources: "./contracts" },
  test: {
    solidity: {
      fuzz: { runs: 256, seed: "0x5eed" },
    },
  },
  networks: {
    // `npx hardhat node` serves this network; fedledger's LocalChain launches it with a free port.
    default: {
      type: "edr-simulated",
      chainType: "l1",
      hardfork: "prague",
    },
  },
});
